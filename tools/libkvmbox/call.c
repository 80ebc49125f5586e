/* libkvmbox: requests without streams (kvmbox_agent_call and the helpers the others build on). */
#include "tools/libkvmbox/lib.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int kb_call_json(struct kvmbox_agent *a, uint32_t id, json_t *req, json_t **result, struct kvmbox_error *err)
{
	int ret = kb_send(a, FRAME_REQUEST, 0, id, req, NULL, 0, err);
	json_decref(req);
	return ret ? -1 : kb_await(a, id, NULL, NULL, result, err);
}

ssize_t kb_mem_read(void *ctx, void *buf, size_t cap, bool *eof, struct kvmbox_error *err)
{
	struct kb_mem_source *m = ctx;
	size_t n = m->left < cap ? m->left : cap;
	(void)err;
	if (n)
		memcpy(buf, m->p, n);
	m->p += n;
	m->left -= n;
	*eof = m->left == 0;
	return (ssize_t)n;
}

int kvmbox_agent_call(kvmbox_agent *a, const char *request_json, char **result_json, struct kvmbox_error *err)
{
	if (result_json)
		*result_json = NULL;
	if (!request_json)
		return kb_err(err, "EINVAL", EINVAL, "kvmbox_agent_call: no request JSON");
	json_error_t jerr;
	json_t *req = json_loads(request_json, 0, &jerr);
	const char *op = json_string_value(json_object_get(req, "op"));
	if (!json_is_object(req) || !op) {
		/* Checked here: the agent closes the connection on a request that is not an object. */
		kb_err(err, "EINVAL", EINVAL, "kvmbox_agent_call: the request must be a JSON object with \"op\": %s",
		       req ? "no \"op\" string" : jerr.text);
		json_decref(req);
		return -1;
	}
	uint32_t id;
	if (kb_begin(a, op, &id, err)) {
		json_decref(req);
		return -1;
	}
	json_t *res = NULL;
	if (kb_call_json(a, id, req, &res, err))
		return -1;
	int ret = 0;
	if (result_json) {
		*result_json = json_dumps(res, JSON_COMPACT);
		if (!*result_json)
			ret = kb_err(err, "ENOMEM", ENOMEM, "%s: no memory for the result of %s", a->where, a->op);
	}
	json_decref(res);
	return ret;
}
