# vtkit - efficient vision transformers on the CPU as Unix tools.
#   make                 portable build: lib/libvt.a and bin/vt-*
#   make NATIVE=1        tuned for this CPU (-march=native)
#   make SANITIZE=1      address + undefined behaviour sanitizers
#   make test            every test; ends with "N passed, N failed"
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
BINS := $(CMDS:%=bin/%)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=build/tests/%)

all: deps-check $(BINS)

# A mode switch (NATIVE, SANITIZE) relinks everything from that mode's objects.
$(shell mkdir -p build; echo $(MODE) | cmp -s - build/.mode || echo $(MODE) > build/.mode)

deps-check:
	@./tests/deps-check.sh

lib/libvt.a: $(LIB_OBJ) build/.mode
	@rm -f $@
	$(AR) rcs $@ $(LIB_OBJ)

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

bin/%: $(OBJ)/cmd/%.o lib/libvt.a
	@mkdir -p bin
	$(CC) $(LDFLAGS) $< lib/libvt.a $(LDLIBS) -o $@

build/tests/%: $(OBJ)/tests/unit/%.o lib/libvt.a
	@mkdir -p build/tests
	$(CC) $(LDFLAGS) $< lib/libvt.a $(LDLIBS) -o $@

test: all $(UNIT_BINS)
	@./tests/run.sh $(UNIT_BINS)

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
