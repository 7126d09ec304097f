# make image: echod's container image, built FROM scratch with buildah (no Docker daemon, no base image, no
# registry), included by the top-level Makefile.
#
#   make image [IMAGE_ARCH=amd64|arm64] [IMAGE_NAME=localhost/echod] [SOURCE_DATE_EPOCH=...]
#
# Leaves in local container storage (podman images):
#   $(IMAGE_NAME):$(IMAGE_VERSION) and $(IMAGE_NAME):latest   (Docker format: it keeps the HEALTHCHECK)
# and writes:
#   dist/echod_VERSION_ARCH.oci.tar      OCI archive of the same image (skopeo copy oci-archive:... docker://REGISTRY/...)
#   dist/echod_VERSION_ARCH.image.json   what went in: each library, its Debian package and version, sizes
# deploy/container/build_image.py does the work; this file computes its inputs and installs its tools.
#
# IMAGE_ARCH other than this machine's: the binary must already be one for that architecture (an arm64 echod
# needs an arm64 Swift build; see the README), the libraries come from that architecture's Debian packages
# installed side by side (multiarch; the build names the apt-get command when they are missing), and the
# tags get an -ARCH suffix so that they do not replace this machine's image.

IMAGE_NAME ?= localhost/echod
IMAGE_NATIVE_ARCH := $(shell dpkg --print-architecture)
IMAGE_ARCH ?= $(if $(ARCH),$(ARCH),$(IMAGE_NATIVE_ARCH))
IMAGE_BIN ?= $(RELEASE_BIN)
# The port the admin endpoint listens on inside the container (the echo ports come from config/echod.yaml).
IMAGE_ADMIN_PORT ?= 9090
# The version echod reports (echod --version) comes from this one line of the source.
IMAGE_VERSION := $(shell sed -n 's/.*static let version = "\([^"]*\)".*/\1/p' Sources/EchodDaemon/Daemon.swift)
IMAGE_TAG := $(IMAGE_VERSION)$(if $(filter-out $(IMAGE_NATIVE_ARCH),$(IMAGE_ARCH)),-$(IMAGE_ARCH))
IMAGE_LATEST := latest$(if $(filter-out $(IMAGE_NATIVE_ARCH),$(IMAGE_ARCH)),-$(IMAGE_ARCH))
# Reproducible: file times and the image's creation time are the last commit's time unless given.
IMAGE_EPOCH := $(if $(SOURCE_DATE_EPOCH),$(SOURCE_DATE_EPOCH),$(shell git log -1 --format=%ct 2>/dev/null))
IMAGE_REVISION := $(shell git describe --always --dirty --abbrev=40 2>/dev/null)
# org.opencontainers.image.source: the repository's origin when it has one, else this checkout.
IMAGE_SOURCE ?= $(or $(shell git config --get remote.origin.url 2>/dev/null),file://$(CURDIR))
# The repository carries no licence file: SPDX's "no assertion" until it does. The libraries in the image
# keep their own licences in /usr/share/doc/PACKAGE/copyright.
IMAGE_LICENSES ?= NOASSERTION
IMAGE_ARCHIVE := dist/echod_$(IMAGE_VERSION)_$(IMAGE_ARCH).oci.tar
IMAGE_INVENTORY := dist/echod_$(IMAGE_VERSION)_$(IMAGE_ARCH).image.json
IMAGE_TRIPLET = $(shell dpkg-architecture -a $(IMAGE_ARCH) -q DEB_HOST_MULTIARCH 2>/dev/null)
# buildah assembles and commits; skopeo writes the OCI archive; podman (with runc: crun refuses a hybrid
# cgroup layout) runs it in the tests; readelf/strip (binutils) and dpkg-architecture (dpkg-dev) inspect and
# strip the binary. A foreign architecture needs that architecture's strip.
IMAGE_APT_PACKAGES = podman buildah runc skopeo binutils dpkg-dev \
	$(if $(filter-out $(IMAGE_NATIVE_ARCH),$(IMAGE_ARCH)),binutils-$(subst _,-,$(IMAGE_TRIPLET)))

.PHONY: image image-deps

image-deps:
	$(call apt_install,$(IMAGE_APT_PACKAGES))

image: image-deps $(if $(filter $(IMAGE_NATIVE_ARCH),$(IMAGE_ARCH)),release)
	@test -n "$(IMAGE_VERSION)" || { echo "image: no version in Sources/EchodDaemon/Daemon.swift" >&2; exit 1; }
	@test -x "$(IMAGE_BIN)" || { echo "image: $(IMAGE_BIN) is missing (make release, or IMAGE_BIN=)" >&2; exit 1; }
	$(PYTHON) deploy/container/build_image.py --binary "$(IMAGE_BIN)" --config config/echod.yaml \
		--arch $(IMAGE_ARCH) --native-arch $(IMAGE_NATIVE_ARCH) --name $(IMAGE_NAME) \
		--tag $(IMAGE_TAG) --latest-tag $(IMAGE_LATEST) --version $(IMAGE_VERSION) \
		--revision "$(IMAGE_REVISION)" --source "$(IMAGE_SOURCE)" --licenses "$(IMAGE_LICENSES)" \
		--epoch $(IMAGE_EPOCH) --admin-port $(IMAGE_ADMIN_PORT) \
		--archive $(IMAGE_ARCHIVE) --manifest $(IMAGE_INVENTORY)
