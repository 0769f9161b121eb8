"""The parallel runtime: the transport (the only code that touches MPI), message schemas,
which rank scores which branches, agreed refusals, device choice, and the asynchronous
mode with its update log."""
