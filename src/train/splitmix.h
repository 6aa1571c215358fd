/* splitmix.h -- splitmix64, the one hash training draws from: initial noise, dropout masks and seeds, the data's order. */
#ifndef NATTER_TRAIN_SPLITMIX_H
#define NATTER_TRAIN_SPLITMIX_H

#include <stdint.h>

/* The splitmix64 output for the state Z (Z advanced by the golden gamma, then mixed):
 * the next state of a sequence is Z + gamma, and mixing distinct inputs gives
 * independent-looking outputs.  Pure; any thread. */
static inline uint64_t
splitmix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#endif
