check-unit:
.PHONY: check-unit
