#include <stdlib.h>
/* Touches a 256-page array: a sequential pass, then strided passes (a loop over a matrix column). */
int main(void) {
    enum { PAGES = 256, PAGE = 4096 };
    volatile char *a = malloc(PAGES * PAGE);
    for (int i = 0; i < PAGES * PAGE; i += 64) a[i] = (char)i;
    long sum = 0;
    for (int round = 0; round < 4; round++)
        for (int col = 0; col < 64; col += 8)
            for (int row = 0; row < PAGES; row++) sum += a[row * PAGE + col];
    return (int)(sum & 1);
}
