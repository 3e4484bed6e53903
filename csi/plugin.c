/* plugin.c — the plugin object's shared state: the target locks, the job
 * table, the count of calls in flight and the metrics live in csi_plugin,
 * not in globals, so a test or the fuzzer can hold a plugin of its own. */
#include "csi.h"

void csi_plugin_init(csi_plugin *p)
{
    atomic_init(&p->ready, false);
    atomic_init(&p->failed, false);
    for (size_t i = 0; i < CSI_TARGET_LOCKS; i++)
        pthread_mutex_init(&p->target_locks[i], NULL);

    pthread_mutex_init(&p->jobs.lock, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC); /* waits have deadlines */
    pthread_cond_init(&p->jobs.cond, &a);
    pthread_condattr_destroy(&a);
    p->jobs.running = NULL;
    p->jobs.threads = 0;
    p->jobs.stopping = false;

    pthread_mutex_init(&p->gc.lock, NULL);
    p->gc.running = p->gc.again = false;

    pthread_mutex_init(&p->calls.lock, NULL);
    pthread_cond_init(&p->calls.cond, NULL);
    p->calls.running = 0;

    p->metrics = csi_metrics_new();
}

void csi_plugin_destroy(csi_plugin *p)
{
    pull_budget_free(p->budget);
    p->budget = NULL;
    csi_metrics_free(p->metrics);
    p->metrics = NULL;
    pthread_cond_destroy(&p->calls.cond);
    pthread_mutex_destroy(&p->calls.lock);
    pthread_mutex_destroy(&p->gc.lock);
    pthread_cond_destroy(&p->jobs.cond);
    pthread_mutex_destroy(&p->jobs.lock);
    for (size_t i = 0; i < CSI_TARGET_LOCKS; i++)
        pthread_mutex_destroy(&p->target_locks[i]);
}
