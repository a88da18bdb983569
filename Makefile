# Thin wrapper over CMake. The two set-up commands of the README:
#   make run    installs what is missing, builds what it runs (the library,
#               the chat example, daebus-call), starts the chat example
#               (REPLICAS=2: two replicas of it behind nginx)
#   make test   installs what is missing, builds, runs every test
BUILD ?= build
JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo
REPLICAS ?= 1

.PHONY: all deps deps-test build run test bench soak format clean

all: build

deps:
	@bash scripts/deps.sh run

deps-test:
	@bash scripts/deps.sh run test browser

build: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# Only what it runs: no tests, no benchmarks. `exec` leaves no shell between
# make and the script, so signals reach the script directly.
run: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS) --target chat_service daebus-call
	exec env REPLICAS=$(REPLICAS) bash scripts/run.sh $(BUILD)

test: deps-test
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest -j2 --output-on-failure --timeout 300

bench: build
	@bash scripts/deps.sh bench
	bash tests/perf/run_all.sh $(BUILD)

soak: build
	@bash scripts/deps.sh bench
	bash tests/perf/soak.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
