/* The guest command line the devices contribute to (kept apart from vm.c: it needs no KVM). */
#include "vmm/vm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vm_cmdline_append(struct vm *vm, struct error *err, const char *fmt, ...)
{
	char add[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(add, sizeof(add), fmt, ap);
	va_end(ap);
	size_t old = vm->cmdline_extra ? strlen(vm->cmdline_extra) : 0;
	char *s = realloc(vm->cmdline_extra, old + strlen(add) + 2);
	if (!s)
		return error_set(err, "out of memory");
	snprintf(s + old, strlen(add) + 2, "%s%s", old ? " " : "", add);
	vm->cmdline_extra = s;
	return 0;
}
