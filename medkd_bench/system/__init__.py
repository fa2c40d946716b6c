"""The machine: device and precision choice, allocator settings, warning filters, safe weight loading."""
