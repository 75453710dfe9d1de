//! The pieces every OxiBot sandbox is built from: the two-stage seccomp
//! filter (`seccomp`), Landlock (`landlock`) and the syscall facts more
//! than one filter relies on (`syscalls`). Each daemon keeps its own
//! allow-list table and the order of its own sandbox entry; what is here is
//! how a table becomes a filter, written once.

pub mod landlock;
pub mod probe;
pub mod seccomp;
pub mod syscalls;
