// Package k8s holds eventhook's Kubernetes manifests (a 3-node NATS JetStream cluster, the streams, and a workflow
// worker with eventhook as a native sidecar; see README.md in this directory) and the tests that check them and the
// Dockerfile. It has no code of its own.
package k8s
