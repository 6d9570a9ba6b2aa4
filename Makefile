# emrkit: `make demo` shows the package's life in a throwaway chroot, `make test` runs every test.
VERSION ?= $(shell sed -n 's/^- semver: *//p' debian/changelog.yaml | head -n1)
RELEASE ?= 1
ARCH    ?= $(shell dpkg --print-architecture 2>/dev/null || go env GOARCH)
DIST    ?= dist
# Byte-identical builds: every timestamp comes from the last commit (outside git: the newest
# changelog entry's date).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || \
	date -d "$$(sed -n 's/^  date: *//p' debian/changelog.yaml | head -n1)" +%s)
export SOURCE_DATE_EPOCH

GO      ?= go
# TAGS=faultinject builds a package whose binary can kill itself at journal points (tests only).
TAGS    ?=
GOBUILD  = CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -tags '$(TAGS)'
LDFLAGS  = -s -w -buildid= -X main.version=$(VERSION)-$(RELEASE)
BIN      = $(DIST)/build/$(VERSION)/emrkit
DEB      = $(DIST)/emrkit_$(VERSION)-$(RELEASE)_$(ARCH).deb

# `make repo`: the signed APT repository of every release the tree can build, in dist/repo.
# The signing key is made in dist/repo-key on first use; a fleet's real key lives off the build
# machine (REPO_KEY, REPO_PASSPHRASE). REPO_DATE is the Release's Date (now; fix it, with the
# same .debs and key, and two builds are byte-identical); REPO_URI goes into emrkit.sources.
RELEASES         = $(shell sed -n 's/^- semver: *//p' debian/changelog.yaml)
REPO_KEY        ?= $(DIST)/repo-key/signing-key.asc
REPO_PASSPHRASE ?= $(dir $(REPO_KEY))passphrase
REPO_DATE       ?= $(shell date +%s)
REPO_URI        ?=

.PHONY: all build deb repo test unit e2e lint bench fuzz demo deps clean
all: build

build: $(BIN)
$(BIN): FORCE
	@mkdir -p $(dir $@)
	$(GOBUILD) -ldflags '$(LDFLAGS)' -o $@ ./cmd/emrkit

deb: $(BIN)
	$(GO) run ./cmd/emrkit-deb --version $(VERSION) --release $(RELEASE) --arch $(ARCH) --binary $(BIN) --out $(DIST)

repo:
	@for v in $(RELEASES); do $(MAKE) -s deb VERSION=$$v >/dev/null || exit 1; done
	@[ -f $(REPO_KEY) ] || $(GO) run ./cmd/emrkit-deb repo-key --out $(dir $(REPO_KEY))
	SOURCE_DATE_EPOCH=$(REPO_DATE) $(GO) run ./cmd/emrkit-deb repo --key $(REPO_KEY) \
		--passphrase-file $(REPO_PASSPHRASE) --out $(DIST)/repo $(if $(REPO_URI),--uri $(REPO_URI)) \
		$(foreach v,$(RELEASES),$(DIST)/emrkit_$(v)-$(RELEASE)_$(ARCH).deb)

deps:
	sh scripts/deps.sh

# Everything: unit, private-MariaDB and chroot lifecycle tests, lintian on the package.
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 60m ./...

# Go benchmarks (2FA PIN cycle, PGP, ...), the 1,000,000-row migration and backup comparisons
# with the seed's SQL and mariadb-dump | gzip, then configure speed under dpkg in a chroot
# (100,000 patients, 200 users) against a bare dpkg -i. scripts/bench-migrate.sh alone takes
# about 17 minutes: the migrations and the restore comparison run three rounds.
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 20x -skip 'VersusSeed|WholeUpgrade|VersusGzip|VersusDumpRestore|VersusPlainClient' ./...
	sh scripts/bench-migrate.sh
	sh scripts/bench-configure.sh

# Every fuzz target (`go test -list '^Fuzz'`) for FUZZTIME each, stopping at the first that
# fails; `make test` replays the committed corpora under each package's testdata/fuzz/.
FUZZTIME ?= 30s
fuzz:
	GO='$(GO)' sh scripts/fuzz.sh $(FUZZTIME)

demo: deps
	sh scripts/demo.sh

clean:
	rm -rf $(DIST)

FORCE:
