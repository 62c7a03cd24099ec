# PGXS build of a Rust extension: cargo builds the shared library, PGXS
# installs it exactly as it would a C module (pkglibdir, DESTDIR, ...).
#
#   make USE_PGXS=1 [PG_CONFIG=/path/to/pg_config]
#   make USE_PGXS=1 install | installcheck | clean

EXTENSION = pg_exclusive_backup
MODULES = pg_exclusive_backup
DATA = pg_exclusive_backup--1.0.sql
REGRESS = pg_exclusive_backup errors privileges
REGRESS_OPTS = --inputdir=$(srcdir)/regress --outputdir=$(CURDIR)/regress-out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)

# The library is not built from C sources, so there is no bitcode to
# install for the JIT (Debian's PGXS turns it on by default).
override with_llvm = no

EXTRA_CLEAN = target regress-out

include $(PGXS)

CARGO ?= cargo
# One cargo target directory per major: the bindings differ between them.
CARGO_TARGET_DIR = $(CURDIR)/target/pg$(MAJORVERSION)
CARGO_FLAGS = --release --lib --manifest-path $(srcdir)/Cargo.toml --target-dir $(CARGO_TARGET_DIR) $(if $(CARGO_NET_OFFLINE),--offline)

# cargo decides what is out of date; make always asks it.
pg_exclusive_backup$(DLSUFFIX): FORCE
	PG_CONFIG="$(PG_CONFIG)" $(CARGO) build $(CARGO_FLAGS)
	cp $(CARGO_TARGET_DIR)/release/libpg_exclusive_backup.so $@

.PHONY: FORCE
FORCE:

installcheck: regress-out-dir
.PHONY: regress-out-dir
regress-out-dir:
	@mkdir -p $(CURDIR)/regress-out
