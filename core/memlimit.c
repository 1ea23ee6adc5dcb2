#include "memlimit.h"

#include "error.h"

#include <unistd.h>

uint64_t qh_phys_mem_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

int qh_check_memory(uint64_t bytes, const char *what)
{
    uint64_t phys = qh_phys_mem_bytes();
    if (phys && bytes > phys)
        return qh_fail(QH_EINPUT, "%s needs %.2f GB of memory, more than the %.2f GB this machine has", what,
                       (double)bytes / 1e9, (double)phys / 1e9);
    return QH_OK;
}
