"""crashkernel=: kernel-exact parsing, sizing (table + estimate from real files), applying."""
