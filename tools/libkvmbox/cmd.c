/* libkvmbox: commands (run, attach, wait, stdin, signal, get): the requests, and the output stream of
 * run and attach delivered to the caller's callback chunk by chunk. */
#include "tools/libkvmbox/lib.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The command of a response: its fields, or a "command" member holding them. Fails without an id. */
static int parse_command(struct kvmbox_agent *a, json_t *res, struct kvmbox_command *c, struct kvmbox_error *err)
{
	json_t *o = json_object_get(res, "command");
	if (!json_is_object(o))
		o = res;
	if (!json_is_string(json_object_get(o, "id")))
		return kb_protocol(a, err, "a command without an id");
	memset(c, 0, sizeof(*c));
	kb_get_str(o, "id", c->id, sizeof(c->id));
	c->pid = (int)kb_get_int(o, "pid", 0);
	kb_get_str(o, "status", c->status, sizeof(c->status));
	c->exit_code = (int)kb_get_int(o, "exitCode", -1);
	kb_get_str(o, "signal", c->signal, sizeof(c->signal));
	c->timed_out = json_is_true(json_object_get(o, "timedOut"));
	c->started_at_ms = kb_get_int(o, "startedAt", 0);
	c->finished_at_ms = kb_get_int(o, "finishedAt", 0);
	c->output_bytes = (uint64_t)kb_get_int(o, "outputBytes", 0);
	c->buffer_start = (uint64_t)kb_get_int(o, "bufferStart", 0);
	return 0;
}

/* DATA meta: {"stream": "stdout"|"stderr", "byteOffset": N, "timestamp": ms}. */
static int parse_chunk(struct kvmbox_agent *a, const struct kb_frame *f, struct kvmbox_chunk *ch,
		       struct kvmbox_error *err)
{
	const char *s = json_string_value(json_object_get(f->json, "stream"));
	int64_t off = kb_get_int(f->json, "byteOffset", -1);
	if (!s || (strcmp(s, "stdout") && strcmp(s, "stderr")) || off < 0)
		return kb_protocol(a, err, "output data without {\"stream\", \"byteOffset\"}");
	ch->stream = s[3] == 'o' ? KVMBOX_STDOUT : KVMBOX_STDERR;
	ch->data = f->data;
	ch->len = f->len;
	ch->byte_offset = (uint64_t)off;
	ch->timestamp_ms = kb_get_int(f->json, "timestamp", 0);
	return 0;
}

struct output_sink {
	struct kvmbox_agent *a;
	kvmbox_output_fn fn;
	void *ctx;
	struct kvmbox_command *cmd;
};

/* One frame of a run or attach before its response: the started event, or output for fn. */
static int output_frame(void *ctx, const struct kb_frame *f, struct kvmbox_error *err)
{
	struct output_sink *o = ctx;
	struct kvmbox_command *cmd = o->cmd;
	if (f->type == FRAME_EVENT) {
		const char *ev = json_string_value(json_object_get(f->json, "event"));
		if (ev && !strcmp(ev, "started")) { /* so that a caller who stops early can attach again */
			kb_get_str(f->json, "id", cmd->id, sizeof(cmd->id));
			cmd->pid = (int)kb_get_int(f->json, "pid", 0);
			snprintf(cmd->status, sizeof(cmd->status), "running");
		}
		return 0;
	}
	if (f->type != FRAME_DATA)
		return 0;
	struct kvmbox_chunk ch;
	if (parse_chunk(o->a, f, &ch, err))
		return -1;
	int stop = o->fn ? o->fn(o->ctx, &ch) : 0;
	if (stop)
		return kb_err(err, "CALLBACK", stop, "the output callback stopped %s%s%s at byte offset "
			      "%llu (the command keeps running: kvmbox_attach can resume from there)",
			      o->a->op, cmd->id[0] ? " of " : "", cmd->id, (unsigned long long)(ch.byte_offset + ch.len));
	return 0;
}

/* Frames of a run or attach until its response: the started event, output to fn, then the command. */
static int stream_output(struct kvmbox_agent *a, uint32_t id, kvmbox_output_fn fn, void *ctx,
			 struct kvmbox_command *cmd, struct kvmbox_error *err)
{
	struct output_sink sink = {a, fn, ctx, cmd};
	json_t *res = NULL;
	int ret = kb_await(a, id, output_frame, &sink, &res, err);
	if (!ret)
		ret = parse_command(a, res, cmd, err);
	json_decref(res);
	return ret;
}

static int bad_string(const char *what, struct kvmbox_error *err)
{
	return kb_err(err, "EINVAL", EINVAL, "%s is not valid UTF-8 (or no memory): the protocol's JSON cannot carry it",
		      what);
}

/* The run request, or NULL (err filled). */
static json_t *run_request(const struct kvmbox_run *r, struct kvmbox_error *err)
{
	json_t *req = json_object();
	if (!req) {
		kb_err(err, "ENOMEM", ENOMEM, "run: no memory");
		return NULL;
	}
	kb_set_str(req, "op", "run");
	if (!kb_set_str(req, "cmd", r->cmd)) {
		bad_string("run: cmd", err);
		goto fail;
	}
	if (r->args) {
		json_t *args = json_array();
		json_object_set_new(req, "args", args);
		for (const char *const *p = r->args; *p; p++)
			if (json_array_append_new(args, json_string(*p))) {
				bad_string("run: an argument", err);
				goto fail;
			}
	}
	if (r->env) {
		json_t *env = json_object();
		json_object_set_new(req, "env", env);
		for (const char *const *p = r->env; *p; p++) {
			const char *eq = strchr(*p, '=');
			if (!eq || eq == *p) {
				kb_err(err, "EINVAL", EINVAL, "run: env entry \"%.64s\" is not NAME=value", *p);
				goto fail;
			}
			char *name = strndup(*p, (size_t)(eq - *p));
			bool ok = name && json_object_set_new(env, name, json_string(eq + 1)) == 0;
			free(name);
			if (!ok) {
				bad_string("run: an env entry", err);
				goto fail;
			}
		}
	}
	if ((r->cwd && !kb_set_str(req, "cwd", r->cwd)) || (r->user && !kb_set_str(req, "user", r->user))) {
		bad_string("run: cwd or user", err);
		goto fail;
	}
	bool ok = true;
	if (r->sudo)
		ok &= kb_set_bool(req, "sudo", true);
	if (r->stdin_open)
		ok &= kb_set_bool(req, "stdin", true);
	if (r->detached)
		ok &= kb_set_bool(req, "detached", true);
	if (r->timeout_ms > 0)
		ok &= kb_set_int(req, "timeoutMs", r->timeout_ms);
	if (r->output_buffer_bytes > 0)
		ok &= kb_set_int(req, "outputBufferBytes", r->output_buffer_bytes);
	if (ok)
		return req;
	kb_err(err, "ENOMEM", ENOMEM, "run: no memory");
fail:
	json_decref(req);
	return NULL;
}

int kvmbox_run(kvmbox_agent *a, const struct kvmbox_run *r, kvmbox_output_fn fn, void *ctx,
	       struct kvmbox_command *cmd, struct kvmbox_error *err)
{
	struct kvmbox_command local;
	if (!cmd)
		cmd = &local;
	memset(cmd, 0, sizeof(*cmd));
	cmd->exit_code = -1;
	if (!r || !r->cmd || !r->cmd[0])
		return kb_err(err, "EINVAL", EINVAL, "kvmbox_run: no command to run (r->cmd)");
	uint32_t id;
	if (kb_begin(a, "run", &id, err))
		return -1;
	json_t *req = run_request(r, err);
	if (!req)
		return -1;
	int ret = kb_send(a, FRAME_REQUEST, 0, id, req, NULL, 0, err);
	json_decref(req);
	if (ret)
		return -1;
	return stream_output(a, id, fn, ctx, cmd, err);
}

static int attach(kvmbox_agent *a, const char *op, const char *id_s, uint64_t from, bool follow, bool output,
		  kvmbox_output_fn fn, void *ctx, struct kvmbox_command *cmd, struct kvmbox_error *err)
{
	struct kvmbox_command local;
	if (!cmd)
		cmd = &local;
	if (!id_s)
		return kb_err(err, "EINVAL", EINVAL, "%s: no command id", op);
	/* The request copies the id first: callers pass cmd->id of the very cmd that is filled. */
	json_t *req = json_object();
	bool ok = req && kb_set_str(req, "op", "attach") && kb_set_str(req, "id", id_s) &&
		  kb_set_int(req, "fromOffset", (json_int_t)(from > INT64_MAX ? INT64_MAX : from)) &&
		  kb_set_bool(req, "follow", follow) && kb_set_bool(req, "output", output);
	if (!ok) {
		json_decref(req);
		return bad_string("the command id", err);
	}
	memset(cmd, 0, sizeof(*cmd));
	cmd->exit_code = -1;
	snprintf(cmd->id, sizeof(cmd->id), "%s", json_string_value(json_object_get(req, "id")));
	uint32_t id;
	if (kb_begin(a, op, &id, err)) {
		json_decref(req);
		return -1;
	}
	int ret = kb_send(a, FRAME_REQUEST, 0, id, req, NULL, 0, err);
	json_decref(req);
	if (ret)
		return -1;
	return stream_output(a, id, fn, ctx, cmd, err);
}

int kvmbox_attach(kvmbox_agent *a, const char *id, uint64_t from_offset, bool follow, kvmbox_output_fn fn,
		  void *ctx, struct kvmbox_command *cmd, struct kvmbox_error *err)
{
	return attach(a, "attach", id, from_offset, follow, true, fn, ctx, cmd, err);
}

int kvmbox_wait(kvmbox_agent *a, const char *id, struct kvmbox_command *cmd, struct kvmbox_error *err)
{
	return attach(a, "wait", id, 0, true, false, NULL, NULL, cmd, err);
}

/* A request {"op": op, "id": id} plus one more member (taken, may be NULL). */
static json_t *id_request(const char *op, const char *id, const char *key, json_t *val, struct kvmbox_error *err)
{
	json_t *req = json_object();
	bool ok = req && kb_set_str(req, "op", op) && kb_set_str(req, "id", id);
	if (ok && key)
		ok = json_object_set_new(req, key, val) == 0;
	else
		json_decref(val);
	if (!ok) {
		json_decref(req);
		bad_string("the command id", err);
		return NULL;
	}
	return req;
}

int kvmbox_stdin(kvmbox_agent *a, const char *id, const void *data, size_t len, bool eof, struct kvmbox_error *err)
{
	uint32_t rid;
	if (!id || (len && !data))
		return kb_err(err, "EINVAL", EINVAL, "kvmbox_stdin: %s", id ? "no data" : "no command id");
	if (kb_begin(a, "stdin", &rid, err))
		return -1;
	json_t *req = id_request("stdin", id, "eof", json_boolean(eof), err);
	if (!req)
		return -1;
	struct kb_mem_source src = { data, len };
	return kb_upload(a, rid, req, kb_mem_read, &src, NULL, err);
}

int kvmbox_signal(kvmbox_agent *a, const char *id, int sig, struct kvmbox_error *err)
{
	uint32_t rid;
	if (!id)
		return kb_err(err, "EINVAL", EINVAL, "kvmbox_signal: no command id");
	if (kb_begin(a, "signal", &rid, err))
		return -1;
	json_t *req = id_request("signal", id, "signal", json_integer(sig), err);
	if (!req)
		return -1;
	return kb_call_json(a, rid, req, NULL, err);
}

int kvmbox_command_get(kvmbox_agent *a, const char *id, struct kvmbox_command *cmd, struct kvmbox_error *err)
{
	uint32_t rid;
	if (!id || !cmd)
		return kb_err(err, "EINVAL", EINVAL, "kvmbox_command_get: %s", id ? "no cmd to fill" : "no command id");
	if (kb_begin(a, "get", &rid, err))
		return -1;
	json_t *req = id_request("get", id, NULL, NULL, err);
	if (!req)
		return -1;
	json_t *res = NULL;
	if (kb_call_json(a, rid, req, &res, err))
		return -1;
	int ret = parse_command(a, res, cmd, err);
	json_decref(res);
	return ret;
}
