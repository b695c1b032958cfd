# vtkit - efficient vision transformers on the CPU as Unix tools.
#   make                 portable build: lib/libvt.a and bin/vt-*
#   make NATIVE=1        tuned for this CPU (-march=native)
#   make SANITIZE=1      address + undefined behaviour sanitizers, built apart
#                        in build/rel-san/ (bin/, libvt.a, tests/ there)
#   make test            every test; ends with "N passed, N failed"
#   make SANITIZE=1 test every test against the sanitizer build (leaks too)
#   make fuzz            every libFuzzer harness FUZZ_SECONDS each (clang)
#   make install PREFIX=/usr/local
PREFIX ?= /usr/local
CC ?= cc
CMDS := vt-convert vt-classify vt-sigmap vt-prune vt-bench

MODE := rel$(if $(NATIVE),-native)$(if $(SANITIZE),-san)
OBJ := build/$(MODE)
OPT := -O2
ifdef NATIVE
ARCH := -march=native
else
ARCH := -march=x86-64-v2 -mtune=generic
endif
ifdef SANITIZE
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1
endif
BLAS_INC := $(firstword $(wildcard /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas))
CPPFLAGS += -Ilib $(if $(BLAS_INC),-I$(BLAS_INC)) -D_GNU_SOURCE -DVT_PREFIX='"$(PREFIX)"'
CFLAGS ?= $(OPT) -g
CFLAGS += -std=c11 -Wall -Wextra -MMD -MP -pthread $(ARCH) $(SAN)
LDFLAGS += -pthread $(SAN)
LDLIBS += -lopenblas -lcjson -ljpeg -lpng -lz -lm

LIB_SRC := $(sort $(wildcard lib/*.c lib/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(OBJ)/%.o)
# The sanitizer build keeps its library, programs and test binaries in its
# own directory, so `make test && make SANITIZE=1 test` rebuilds neither.
ifdef SANITIZE
OUT := $(OBJ)/
LIBVT := $(OBJ)/libvt.a
STAMP := build/.mode-san
else
OUT :=
LIBVT := lib/libvt.a
STAMP := build/.mode
endif
BINDIR := $(OUT)bin
TESTDIR := $(if $(OUT),$(OUT)tests,build/tests)
BINS := $(CMDS:%=$(BINDIR)/%)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(TESTDIR)/%)

all: deps-check $(BINS)

# A mode switch (NATIVE) relinks everything from that mode's objects.
$(shell mkdir -p build; echo $(MODE) | cmp -s - $(STAMP) || echo $(MODE) > $(STAMP))

deps-check:
	@./tests/deps-check.sh

$(LIBVT): $(LIB_OBJ) $(STAMP)
	@rm -f $@
	$(AR) rcs $@ $(LIB_OBJ)

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BINDIR)/%: $(OBJ)/cmd/%.o $(LIBVT)
	@mkdir -p $(BINDIR)
	$(CC) $(LDFLAGS) $< $(LIBVT) $(LDLIBS) -o $@

$(TESTDIR)/%: $(OBJ)/tests/unit/%.o $(LIBVT)
	@mkdir -p $(TESTDIR)
	$(CC) $(LDFLAGS) $< $(LIBVT) $(LDLIBS) -o $@

# Under the sanitizers every finding is fatal, leaks included (LeakSanitizer
# makes a leaking program exit 23), and VT_SANITIZE tells the tests.
SAN_ENV := VT_SANITIZE=1 ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=exitcode=23 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
test: all $(UNIT_BINS)
	@$(if $(SANITIZE),$(SAN_ENV)) VT_BIN=$(abspath $(BINDIR)) ./tests/run.sh $(UNIT_BINS)

# Fuzzing: clang, libFuzzer, ASan + UBSan, objects of their own in build/fuzz.
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
FUZZ_CC := clang
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -g -O1 -std=c11 -Wall -MMD -MP $(FUZZ_SAN)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=build/fuzz/obj/%.o)
FUZZ_TARGETS ?= $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c)))

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

build/fuzz/libvt.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/libvt.a
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MF $@.d $< build/fuzz/libvt.a $(LDLIBS) -o $@

fuzz-build: $(FUZZ_TARGETS:%=build/fuzz/%)

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) tests/fuzz/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/vtkit
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5
	cp -R share/. $(DESTDIR)$(PREFIX)/share/vtkit/

clean:
	rm -rf build bin lib/libvt.a

.PHONY: all test install clean deps-check fuzz fuzz-build
.SECONDARY:
-include $(shell find build -name '*.d' 2>/dev/null)
