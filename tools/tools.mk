# Tools: the kvmbox CLI (boot-test) and the benchmarks.
tools:
.PHONY: tools
