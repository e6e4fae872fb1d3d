package sidecar

// Version is the sidecar's version, set at build time with -ldflags "-X github.com/flovyn/eventhook/sidecar.Version=…".
var Version = "dev"
