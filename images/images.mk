# Guest images (`make images`), all under $(BUILD)/images:
#   vmlinux, bzImage     the guest kernel: images/kernel/build.sh (cached under $KVMBOX_CACHE, see there)
#   initramfs.cpio.gz    busybox (Debian's busybox-static) + the guest agent $(BUILD)/kvmbox-agent as PID 1
#                        (/init -> /sbin/kvmbox-agent) + the legacy shell init images/initramfs/init as
#                        /etc/kvmbox/init.sh (the agent execs it for kvmbox_cmd=/kvmbox_shell= boots), written
#                        by images/initramfs/mkimage.py (newc, device nodes, fixed mtimes), gzip -9n
#   rootfs.ext4          the same userland (/sbin/init -> kvmbox-agent) in a 256 MiB sparse ext4
#                        (images/rootfs/build.sh; no root needed)
# Both are rebuilt when the agent changes (tools/tools.mk builds it, static).
IMAGES_DIR     := $(BUILD)/images
IMAGES_BUSYBOX ?= /bin/busybox
IMAGES_AGENT   ?= $(BUILD)/kvmbox-agent
IMAGES_KERNEL  := $(IMAGES_DIR)/vmlinux $(IMAGES_DIR)/bzImage
IMAGES_ALL     := $(IMAGES_KERNEL) $(IMAGES_DIR)/initramfs.cpio.gz $(IMAGES_DIR)/rootfs.ext4

images: $(IMAGES_ALL)
	@echo "images: $(IMAGES_ALL) ready"

# $(call images-need,COMMAND,DEBIAN-PACKAGE): fail clearly when a tool is missing (e2fsprogs lives in /sbin).
images-need = @PATH="$$PATH:/usr/sbin:/sbin" command -v $(1) >/dev/null 2>&1 || { \
	echo "images: '$(1)' not found: install Debian's $(2) (apt-get install $(2))" >&2; exit 1; }

# The kernel. build.sh keys its cache on every input, so running it is cheap when nothing changed (a copy);
# make re-runs it when a file under images/kernel/, the source tarball, or a setting it reads changes.
IMAGES_KERNEL_SRC := $(or $(KVMBOX_KERNEL_SRC),/usr/src/linux-source-6.12.tar.xz)
IMAGES_KERNEL_INPUTS := $(shell find images/kernel -type f 2>/dev/null) $(wildcard $(IMAGES_KERNEL_SRC)) \
	$(wildcard $(KVMBOX_KERNEL_PATCHES) $(KVMBOX_KERNEL_CONFIG))
IMAGES_KERNEL_SETTINGS := src=$(IMAGES_KERNEL_SRC) patches=$(KVMBOX_KERNEL_PATCHES) \
	config=$(KVMBOX_KERNEL_CONFIG) pvm=$(or $(KVMBOX_KERNEL_PVM),auto) \
	pvm-host=$(if $(wildcard /sys/module/kvm_pvm),1,0) cache=$(KVMBOX_CACHE)
# Rewritten only when the settings differ, so its mtime says when they last changed.
$(IMAGES_DIR)/.kernel-settings: FORCE
	@mkdir -p $(@D)
	@echo '$(IMAGES_KERNEL_SETTINGS)' | cmp -s - $@ 2>/dev/null || echo '$(IMAGES_KERNEL_SETTINGS)' > $@

# Packages a kernel compile needs, checked when build.sh fails (a cached kernel needs none of them).
IMAGES_KERNEL_TOOLS := gcc:gcc make:make flex:flex bison:bison bc:bc perl:perl xz:xz-utils patch:patch \
	/usr/include/gelf.h:libelf-dev /usr/include/openssl/ssl.h:libssl-dev
$(IMAGES_KERNEL) &: $(IMAGES_KERNEL_INPUTS) $(IMAGES_DIR)/.kernel-settings
	@echo "  KERNEL  $(IMAGES_KERNEL) (images/kernel/build.sh; a cache miss compiles for minutes)"
	@images/kernel/build.sh $(IMAGES_DIR) || { \
		for t in $(IMAGES_KERNEL_TOOLS); do c=$${t%%:*}; p=$${t#*:}; \
			case $$c in /*) [ -e $$c ];; *) command -v $$c >/dev/null;; esac || \
			echo "images: kernel build needs '$$c': install Debian's $$p (apt-get install $$p)" >&2; \
		done; exit 1; }
	@touch $(IMAGES_KERNEL)

IMAGES_USERLAND_INPUTS := images/initramfs/init images/initramfs/mkimage.py images/images.mk

$(IMAGES_DIR)/initramfs.cpio.gz: $(IMAGES_USERLAND_INPUTS) $(IMAGES_AGENT) $(wildcard $(IMAGES_BUSYBOX))
	$(call images-need,python3,python3)
	$(call images-need,gzip,gzip)
	$(call images-need,$(IMAGES_BUSYBOX),busybox-static)
	@echo "  CPIO    $@"
	@mkdir -p $(@D)
	@python3 images/initramfs/mkimage.py initramfs --busybox $(IMAGES_BUSYBOX) --agent $(IMAGES_AGENT) \
		--init images/initramfs/init -o $(IMAGES_DIR)/initramfs.cpio
	@gzip -9n < $(IMAGES_DIR)/initramfs.cpio > $@.tmp && rm -f $(IMAGES_DIR)/initramfs.cpio && mv $@.tmp $@

$(IMAGES_DIR)/rootfs.ext4: $(IMAGES_USERLAND_INPUTS) images/rootfs/build.sh $(IMAGES_AGENT) $(wildcard $(IMAGES_BUSYBOX))
	$(call images-need,python3,python3)
	$(call images-need,mkfs.ext4,e2fsprogs)
	$(call images-need,debugfs,e2fsprogs)
	$(call images-need,e2fsck,e2fsprogs)
	$(call images-need,$(IMAGES_BUSYBOX),busybox-static)
	@echo "  EXT4    $@"
	@mkdir -p $(@D)
	@images/rootfs/build.sh $@ $(IMAGES_BUSYBOX) $(IMAGES_AGENT)

.PHONY: images FORCE
FORCE:
