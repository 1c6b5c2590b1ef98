// Package images holds the Dockerfiles of the project's images (one per
// binary, built by hack/build-image.sh). Its test, images_test.go, checks
// them and the build script without Docker: FROM scratch, a numeric
// non-root USER, the OCI labels, and that the binaries come from the
// Makefile's version-stamping build targets.
package images
