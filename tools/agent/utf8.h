/* Bytes that may not be UTF-8 (file names, command output, messages quoting a client's bytes) as JSON
 * strings, which must be: the agent, its host library and kvmboxd share this one conversion. */
#ifndef KVMBOX_AGENT_UTF8_H
#define KVMBOX_AGENT_UTF8_H

#include <jansson.h>
#include <stddef.h>

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 when invalid: overlong forms, surrogates and
 * code points over U+10FFFF are invalid, as jansson has them. */
size_t utf8_len(const unsigned char *p, size_t n);

/* A JSON string of n bytes in which each byte that is not part of valid UTF-8 becomes U+FFFD (NUL stays
 * NUL). NULL only without memory. */
json_t *json_string_lossy(const char *s, size_t n);

#endif
