"""The execution environment: device and precision (:mod:`.device`), the memory allocator (:mod:`.allocator`), dependency warning filters (:mod:`.quiet`)."""
