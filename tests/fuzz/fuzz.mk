check-fuzz-corpus:
.PHONY: check-fuzz-corpus
