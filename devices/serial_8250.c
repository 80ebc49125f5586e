/*
 * 16550A UART on COM1 (0x3f8, IRQ 4): the guest console. Output goes to the --console target as the
 * guest writes it; input comes from stdin through the event loop into a receive FIFO. Enough of the
 * chip (scratch, loopback, FIFO detection, THRE interrupt) that Linux's 8250 driver probes it as-is.
 */
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <termios.h>
#include <unistd.h>

#define COM1_PORT 0x3f8
#define COM1_IRQ 4
#define RX_FIFO_SIZE 4096

#define UART_RX 0   /* RBR / THR / DLL */
#define UART_IER 1  /* IER / DLM */
#define UART_IIR 2  /* IIR (read) / FCR (write) */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO_ENABLED 0xc0
#define LCR_DLAB 0x80
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02

static const char panic_text[] = "Kernel panic - not syncing";

struct serial {
	struct vm *vm;
	pthread_mutex_t lock;
	int out_fd;
	bool out_owned;
	int in_fd;           /* -1: no input */
	bool in_paused;      /* FIFO full: stop reading stdin until the guest drains it */
	bool tty_saved;
	struct termios saved_tty;
	uint8_t ier, fcr, lcr, mcr, scr, dll, dlm;
	bool thr_ipending;
	int irq_level;
	uint8_t rx[RX_FIFO_SIZE];
	unsigned rx_head, rx_count;
	unsigned panic_match; /* bytes of panic_text matched so far */
	/* Output is written in runs: a burst of THR writes becomes one write(2), flushed at the next access
	 * to any other register (the driver reads LSR or IIR between bursts), a newline, or a full buffer. */
	uint8_t out[256];
	unsigned out_len;
};

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO_ENABLED : 0;
	if ((s->ier & IER_RDI) && s->rx_count)
		return fifo | IIR_RDI;
	if ((s->ier & IER_THRI) && s->thr_ipending)
		return fifo | IIR_THRI;
	return fifo | IIR_NO_INT;
}

/* The ISA line follows the pending state, gated by OUT2 as on a PC. */
static void serial_update_irq(struct serial *s)
{
	int level = !(serial_iir(s) & IIR_NO_INT) && (s->mcr & MCR_OUT2);
	if (level != s->irq_level) {
		s->irq_level = level;
		vm_irq_line(s->vm, COM1_IRQ, level);
	}
}

static void rx_push(struct serial *s, uint8_t b)
{
	if (s->rx_count == RX_FIFO_SIZE)
		return;
	s->rx[(s->rx_head + s->rx_count) % RX_FIFO_SIZE] = b;
	s->rx_count++;
}

static void console_flush(struct serial *s)
{
	unsigned done = 0;
	while (s->out_fd >= 0 && done < s->out_len) {
		ssize_t r = write(s->out_fd, s->out + done, s->out_len - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break; /* a closed console must not stop the guest */
		done += (unsigned)r;
	}
	s->out_len = 0;
}

static void console_out(struct serial *s, uint8_t b)
{
	s->out[s->out_len++] = b;
	if (b == '\n' || s->out_len == sizeof(s->out))
		console_flush(s);
	/* A kernel panic followed by a reboot (panic=-1) must not look like a clean reboot. */
	if (b == (uint8_t)panic_text[s->panic_match]) {
		if (++s->panic_match == sizeof(panic_text) - 1) {
			atomic_store(&s->vm->guest_panicked, true);
			s->panic_match = 0;
		}
	} else {
		s->panic_match = b == (uint8_t)panic_text[0] ? 1 : 0;
	}
}

static void serial_write(struct serial *s, unsigned reg, uint8_t v)
{
	bool dlab = s->lcr & LCR_DLAB;
	switch (reg) {
	case UART_RX:
		if (dlab) {
			s->dll = v;
			break;
		}
		if (s->mcr & MCR_LOOP)
			rx_push(s, v);
		else
			console_out(s, v);
		s->thr_ipending = true; /* sent at once: THR is empty again */
		break;
	case UART_IER:
		if (dlab) {
			s->dlm = v;
			break;
		}
		if (!(s->ier & IER_THRI) && (v & IER_THRI))
			s->thr_ipending = true; /* enabling THRI with an empty THR interrupts */
		s->ier = v & 0x0f;
		break;
	case UART_IIR:
		s->fcr = v;
		if (v & FCR_CLEAR_RX)
			s->rx_count = 0;
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & 0x1f;
		break;
	case UART_SCR:
		s->scr = v;
		break;
	default:
		break; /* LSR and MSR are read-only */
	}
}

static uint8_t serial_read(struct serial *s, unsigned reg)
{
	bool dlab = s->lcr & LCR_DLAB;
	switch (reg) {
	case UART_RX: {
		if (dlab)
			return s->dll;
		if (!s->rx_count)
			return 0;
		uint8_t b = s->rx[s->rx_head];
		s->rx_head = (s->rx_head + 1) % RX_FIFO_SIZE;
		s->rx_count--;
		if (s->in_paused && s->rx_count < RX_FIFO_SIZE / 2) {
			s->in_paused = false;
			event_loop_modify(&s->vm->loop, s->in_fd, EPOLLIN);
		}
		return b;
	}
	case UART_IER:
		return dlab ? s->dlm : s->ier;
	case UART_IIR: {
		uint8_t iir = serial_iir(s);
		if ((iir & 0x0f) == IIR_THRI)
			s->thr_ipending = false; /* reading IIR acknowledges THRE */
		return iir;
	}
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		return (uint8_t)(LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0));
	case UART_MSR:
		if (s->mcr & MCR_LOOP) /* loopback: modem inputs mirror the outputs (the driver's probe) */
			return (uint8_t)(((s->mcr & MCR_RTS) ? 0x10 : 0) | ((s->mcr & MCR_DTR) ? 0x20 : 0) |
					 ((s->mcr & MCR_OUT1) ? 0x40 : 0) | ((s->mcr & MCR_OUT2) ? 0x80 : 0));
		return 0xb0; /* DCD, DSR, CTS: a cable is attached */
	case UART_SCR:
		return s->scr;
	}
	return 0xff;
}

static void serial_access(void *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct serial *s = dev;
	pthread_mutex_lock(&s->lock);
	if (s->out_len && !(is_write && offset == UART_RX && !(s->lcr & LCR_DLAB)))
		console_flush(s);
	for (uint32_t i = 0; i < len && offset + i < 8; i++) {
		if (is_write)
			serial_write(s, (unsigned)(offset + i), data[i]);
		else
			data[i] = serial_read(s, (unsigned)(offset + i));
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_on_input(void *ctx, uint32_t events)
{
	struct serial *s = ctx;
	uint8_t buf[256];
	pthread_mutex_lock(&s->lock);
	size_t room = RX_FIFO_SIZE - s->rx_count;
	ssize_t n = read(s->in_fd, buf, room < sizeof(buf) ? room : sizeof(buf));
	if (n > 0) {
		for (ssize_t i = 0; i < n; i++)
			rx_push(s, buf[i]);
		if (s->rx_count == RX_FIFO_SIZE) {
			s->in_paused = true;
			event_loop_modify(&s->vm->loop, s->in_fd, 0);
		}
		serial_update_irq(s);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR) || (events & (EPOLLHUP | EPOLLERR))) {
		/* End of input: the guest keeps running, it just gets no more console input. */
		event_loop_remove(&s->vm->loop, s->in_fd);
		s->in_fd = -1;
	}
	pthread_mutex_unlock(&s->lock);
}

static int serial_create(struct vm *vm, void **state, struct error *err)
{
	struct serial *s = calloc(1, sizeof(*s));
	if (!s)
		return error_set(err, "out of memory");
	*state = s;
	s->vm = vm;
	s->in_fd = -1;
	s->out_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	const struct vm_config *cfg = vm->cfg;
	if (cfg->console == CONSOLE_STDIO) {
		s->out_fd = STDOUT_FILENO;
		s->in_fd = STDIN_FILENO;
		if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &s->saved_tty) == 0) {
			/* Characters go to the guest as typed; Ctrl-C still stops the monitor. */
			struct termios t = s->saved_tty;
			t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
			t.c_cc[VMIN] = 1;
			t.c_cc[VTIME] = 0;
			s->tty_saved = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
		}
		/* A closed or unpollable stdin (a regular file) just means no input. */
		struct error ignored;
		if (event_loop_add(&vm->loop, s->in_fd, EPOLLIN, serial_on_input, s, &ignored))
			s->in_fd = -1;
	} else if (cfg->console == CONSOLE_FILE) {
		s->out_fd = open(cfg->console_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (s->out_fd < 0)
			return error_set(err, "--console %s: cannot open for writing: %s", cfg->console_path,
					 strerror(errno));
		s->out_owned = true;
	}
	return bus_register(&vm->pio, COM1_PORT, 8, serial_access, s, "serial (COM1)", err);
}

static void serial_destroy(void *state)
{
	struct serial *s = state;
	if (!s)
		return;
	console_flush(s);
	if (s->tty_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &s->saved_tty);
	if (s->out_owned)
		close(s->out_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct device_desc serial_8250 = {
	.name = "serial-8250",
	.create = serial_create,
	.destroy = serial_destroy,
};
DEVICE_REGISTER(serial_8250);
