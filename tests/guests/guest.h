/* Constants shared by the test guests' assembly and C code (no C types here). */
#ifndef GUEST_H
#define GUEST_H

#define TRAMP_BASE 0x10000	/* AP trampoline: SIPI vector 0x10 */
#define MAX_APS 256
#define AP_STACK_SHIFT 9	/* 512-byte stack per AP */

#endif
