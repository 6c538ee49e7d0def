# scoutfs in Swift: set-up, build and test targets.
#   make deps      install the apt packages a fresh machine lacks
#   make build     debug build of everything, tests included
#   make test      every test (swift test)
#   make demo      the main job (see README)
#   make bench     btree benchmarks (release build), figures for docs/performance.md
#   make judges    mdtest and fio: scoutfs against tmpfs and a libfuse passthrough (bench/judges;
#                  MDTEST=path/to/mdtest of hpc/ior, else that phase is skipped)
#   make install   the debug binary, mount helper, fence script, man pages and systemd units
#   make uninstall removes what install (or the demo) put there

APT_PACKAGES := pkg-config libblkid-dev fuse3 libfuse3-dev util-linux acl attr procps iproute2 python3

.PHONY: deps build test demo bench judges clean install uninstall

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	swift build --build-tests

test: build
	# one test at a time: the real-mount and FUSE tests block their thread for seconds, and on
	# 2 cores two of them at once starve every async test (see docs/testing.md)
	swift test --no-parallel

demo: deps
	swift build
	./scripts/demo.sh

bench: deps
	./bench/run

judges: deps
	@dpkg -s fio >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio; }
	./bench/judges

clean:
	rm -rf .build var

# The debug build (the one the demo and the tests use): /usr/local/sbin/scoutfs and
# scoutfs-fence-local, /sbin/mount.scoutfs, man pages under /usr/local/share/man, units in
# /etc/systemd/system (neither enabled nor started). DESTDIR, PREFIX, UNITDIR and HELPERDIR
# move them (see scripts/install.sh). `make build` (or demo, or test) first.
install:
	swift build
	./scripts/install.sh install .build/debug/scoutfs

uninstall:
	./scripts/install.sh uninstall

# The quorum election simulation over SEEDS seeds (SCOUT_SEED=S replays one; see docs/testing.md)
SEEDS ?= 1000
.PHONY: simulate
simulate: deps
	SCOUT_SIM_SEEDS=$(SEEDS) swift test --filter QuorumSimulationTests

# The multi-mount fuzzer over SEEDS seeds, 10 seeds per cluster (SCOUT_STRESS_SEED=S replays
# one; SCOUT_STRESS_OPS=-mmap,-append leaves op kinds out; see docs/testing.md)
BASE ?= 1
.PHONY: stress
stress: deps
	swift build --build-tests
	SCOUT_STRESS_SEEDS=$(SEEDS) SCOUT_STRESS_BASE=$(BASE) SCOUT_STRESS_MAX_HANGS=$(SEEDS) swift test --skip-build --filter StressTests/multiMountFuzz
