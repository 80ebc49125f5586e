/* kvmbox-vmm: one VM per process. Parses the configuration, builds the VM, runs it, exits with why it ended. */
#include "vmm/arch.h"
#include "vmm/config.h"
#include "vmm/teardown.h"
#include "vmm/vm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#ifndef KVMBOX_VERSION
#define KVMBOX_VERSION "0.1.0"
#endif

/* The capabilities the monitor relies on, with what it uses each for. */
static const struct {
	int cap;
	const char *name;
	const char *use;
	bool required;
} kvm_caps[] = {
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", "guest RAM", true },
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", "in-kernel LAPIC/IOAPIC/PIC", true },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2", "in-kernel PIT", true },
	{ KVM_CAP_IRQ_INJECT_STATUS, "KVM_CAP_IRQ_INJECT_STATUS", "KVM_IRQ_LINE", false },
	{ KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD", "virtio notifications without vCPU work", false },
	{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD", "device interrupts from the event loop", false },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", "KVM_GET_SUPPORTED_CPUID", true },
	{ KVM_CAP_TSC_DEADLINE_TIMER, "KVM_CAP_TSC_DEADLINE_TIMER", "TSC-deadline timer", false },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", "stopping vCPUs without races", false },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR", "TSS for real-mode guests (VMX)", false },
};

static int probe(void)
{
	struct error err = { .msg = "" };
	int kvm_fd;
	enum kvm_backend backend;
	if (kvm_open(&kvm_fd, &backend, &err)) {
		fprintf(stderr, "kvmbox-vmm: %s\n", err.msg);
		return VM_EXIT_HOST;
	}
	printf("backend: %s\n", kvm_backend_name(backend));
	printf("kvm api version: %d\n", ioctl(kvm_fd, KVM_GET_API_VERSION, 0));
	int nr = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	int max = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = nr;
	printf("recommended vcpus: %d\n", nr);
	printf("max vcpus: %d\n", max > CONFIG_MAX_CPUS ? CONFIG_MAX_CPUS : max);
	int missing = 0;
	printf("capabilities:\n");
	for (size_t i = 0; i < sizeof(kvm_caps) / sizeof(kvm_caps[0]); i++) {
		int v = ioctl(kvm_fd, KVM_CHECK_EXTENSION, kvm_caps[i].cap);
		printf("  %-28s %-4s %s%s\n", kvm_caps[i].name, v > 0 ? "yes" : "no", kvm_caps[i].use,
		       kvm_caps[i].required ? " (required)" : "");
		if (v <= 0 && kvm_caps[i].required)
			missing++;
	}
	arch_probe(stdout, kvm_fd, backend);
	int vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	printf("create vm: %s\n", vm_fd >= 0 ? "ok" : strerror(errno));
	if (vm_fd >= 0)
		close(vm_fd);
	close(kvm_fd);
	return (vm_fd >= 0 && !missing) ? 0 : VM_EXIT_HOST;
}

int main(int argc, char **argv)
{
	struct vm_config cfg;
	struct error err = { .msg = "" };
	config_defaults(&cfg);
	if (config_parse_args(&cfg, argc, argv, &err)) {
		fprintf(stderr, "kvmbox-vmm: %s\n", err.msg);
		config_free(&cfg);
		return VM_EXIT_BAD_INPUT;
	}
	int rc;
	if (cfg.help) {
		config_print_help("kvmbox-vmm");
		rc = 0;
	} else if (cfg.version) {
		printf("kvmbox-vmm %s\n", KVMBOX_VERSION);
		rc = 0;
	} else if (cfg.probe) {
		rc = probe();
	} else if (!cfg.kernel) {
		fprintf(stderr, "kvmbox-vmm: no kernel given: pass --kernel PATH (or a --config file with "
				"\"kernel\"); see kvmbox-vmm --help\n");
		rc = VM_EXIT_BAD_INPUT;
	} else {
		struct vm vm;
		int c = vm_create(&vm, &cfg, &err);
		if (c) {
			log_error(&vm.log, "%s", err.msg);
			rc = c == -VM_EXIT_BAD_INPUT ? VM_EXIT_BAD_INPUT : VM_EXIT_HOST;
		} else {
			rc = vm_run(&vm, &err);
			if (rc < 0) {
				log_error(&vm.log, "%s", err.msg);
				rc = VM_EXIT_HOST;
			}
			teardown_detach(&vm);
		}
		vm_destroy(&vm);
	}
	config_free(&cfg);
	return rc;
}
