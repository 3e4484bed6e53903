/* oci-internal.h — helpers shared by the liboci sources and nobody else.
 * Not installed, not included above oci/. */
#ifndef MODELVOL_OCI_INTERNAL_H
#define MODELVOL_OCI_INTERNAL_H

#include "oci.h"

/* Longest piece of untrusted input quoted in an error message. Messages must
 * stay one readable line, whatever a registry or a user throws at us. */
#define OCI_QUOTE_MAX 80

/* Copies s into buf for an error message: non-printable bytes become '?',
 * and input longer than OCI_QUOTE_MAX is cut with "...". Returns buf. */
const char *oci_quote(const char *s, char *buf, size_t len);

/* Declares a buffer and quotes s into it, for use in one format call. */
#define OCI_QUOTED(s) oci_quote((s), (char[OCI_QUOTE_MAX + 4]){0}, OCI_QUOTE_MAX + 4)

#endif
