package k8s

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/natsbus"
	"github.com/flovyn/eventhook/subjects"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"
)

// What the manifests must agree on.
const (
	sidecarName    = "eventhook"
	workerName     = "worker"
	socketDir      = "/var/run/eventhook"
	socketPath     = socketDir + "/eventhook.sock"
	configDir      = "/etc/eventhook"
	sidecarUser    = 65532
	natsReplicas   = 3
	repoRoot       = "../.."
	versionPackage = "github.com/flovyn/eventhook/sidecar.Version"
)

// The parts of Kubernetes objects the tests look at; yaml.v3 ignores the rest.
type (
	object struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   metadata          `yaml:"metadata"`
		Data       map[string]string `yaml:"data"`
		Spec       yaml.Node         `yaml:"spec"`
		file       string
	}
	metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	}
	workloadSpec struct {
		Replicas             *int              `yaml:"replicas"`
		ServiceName          string            `yaml:"serviceName"`
		Selector             labelSelector     `yaml:"selector"`
		Template             podTemplate       `yaml:"template"`
		VolumeClaimTemplates []volumeClaimTmpl `yaml:"volumeClaimTemplates"`
		ClusterIP            string            `yaml:"clusterIP"`
		PublishNotReady      bool              `yaml:"publishNotReadyAddresses"`
		Ports                []servicePort     `yaml:"ports"`
		// ServiceSelector is a Service's selector (a plain map, where workloads have matchLabels).
		ServiceSelector map[string]string `yaml:"-"`
	}
	labelSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	podTemplate struct {
		Metadata metadata `yaml:"metadata"`
		Spec     podSpec  `yaml:"spec"`
	}
	podSpec struct {
		SecurityContext *securityContext `yaml:"securityContext"`
		InitContainers  []container      `yaml:"initContainers"`
		Containers      []container      `yaml:"containers"`
		Volumes         []volume         `yaml:"volumes"`
		RestartPolicy   string           `yaml:"restartPolicy"`
	}
	container struct {
		Name            string           `yaml:"name"`
		Image           string           `yaml:"image"`
		RestartPolicy   string           `yaml:"restartPolicy"`
		Command         []string         `yaml:"command"`
		Args            []string         `yaml:"args"`
		Env             []envVar         `yaml:"env"`
		Ports           []containerPort  `yaml:"ports"`
		StartupProbe    *probe           `yaml:"startupProbe"`
		ReadinessProbe  *probe           `yaml:"readinessProbe"`
		LivenessProbe   *probe           `yaml:"livenessProbe"`
		Resources       resources        `yaml:"resources"`
		SecurityContext *securityContext `yaml:"securityContext"`
		VolumeMounts    []volumeMount    `yaml:"volumeMounts"`
	}
	envVar struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	}
	containerPort struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	}
	probe struct {
		HTTPGet *struct {
			Path string    `yaml:"path"`
			Port yaml.Node `yaml:"port"`
		} `yaml:"httpGet"`
		Exec *struct {
			Command []string `yaml:"command"`
		} `yaml:"exec"`
	}
	resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	}
	securityContext struct {
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		FSGroup                  *int64 `yaml:"fsGroup"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		Capabilities             *struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
		SeccompProfile *struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	}
	volumeMount struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	}
	volume struct {
		Name      string                   `yaml:"name"`
		EmptyDir  *struct{ Medium string } `yaml:"emptyDir"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	}
	volumeClaimTmpl struct {
		Metadata metadata `yaml:"metadata"`
	}
	servicePort struct {
		Name string `yaml:"name"`
		Port int    `yaml:"port"`
	}
)

// manifests reads every YAML document of every manifest in this directory (kustomization.yaml aside).
func manifests(t *testing.T) []*object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var objs []*object
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s, document %d: %v", f, i, err)
			}
			o := &object{file: f}
			if err := n.Decode(o); err != nil {
				t.Fatalf("%s, document %d: %v", f, i, err)
			}
			objs = append(objs, o)
		}
	}
	if len(objs) == 0 {
		t.Fatal("no manifests found")
	}
	return objs
}

// find returns the object of that kind and name, failing the test when there is none.
func find(t *testing.T, objs []*object, kind, name string) *object {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	t.Fatalf("no %s named %q in the manifests", kind, name)
	return nil
}

// spec decodes the spec of a workload or a Service.
func (o *object) spec(t *testing.T) *workloadSpec {
	t.Helper()
	var s workloadSpec
	if err := o.Spec.Decode(&s); err != nil {
		t.Fatalf("%s %s: %v", o.Kind, o.Metadata.Name, err)
	}
	if o.Kind == "Service" {
		var svc struct {
			Selector map[string]string `yaml:"selector"`
		}
		if err := o.Spec.Decode(&svc); err != nil {
			t.Fatalf("%s %s: selector: %v", o.Kind, o.Metadata.Name, err)
		}
		s.ServiceSelector = svc.Selector
	}
	return &s
}

func containerNamed(list []container, name string) *container {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func (c *container) mount(name string) *volumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func (c *container) env(name string) *envVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// portNumber resolves a probe's port (a number or the name of a container port).
func (c *container) portNumber(n yaml.Node) int {
	if p, err := strconv.Atoi(n.Value); err == nil {
		return p
	}
	for _, p := range c.Ports {
		if p.Name == n.Value {
			return p.ContainerPort
		}
	}
	return 0
}

func (s *podSpec) volume(name string) *volume {
	for i := range s.Volumes {
		if s.Volumes[i].Name == name {
			return &s.Volumes[i]
		}
	}
	return nil
}

func TestManifestsParse(t *testing.T) {
	seen := map[string]string{}
	for _, o := range manifests(t) {
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Errorf("%s: a document lacks apiVersion, kind or metadata.name: %+v", o.file, o)
			continue
		}
		key := o.Kind + "/" + o.Metadata.Name
		if f, dup := seen[key]; dup {
			t.Errorf("%s is defined twice (%s and %s)", key, f, o.file)
		}
		seen[key] = o.file
		if len(o.Metadata.Labels) == 0 {
			t.Errorf("%s (%s) has no labels", key, o.file)
		}
	}
}

func TestManifestKustomizationListsEveryManifest(t *testing.T) {
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Resources  []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	if k.Kind != "Kustomization" || !strings.HasPrefix(k.APIVersion, "kustomize.config.k8s.io/") {
		t.Errorf("kustomization.yaml: kind %q, apiVersion %q", k.Kind, k.APIVersion)
	}
	files, _ := filepath.Glob("*.yaml")
	for _, f := range files {
		if f != "kustomization.yaml" && !slices.Contains(k.Resources, f) {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(r); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
		}
	}
}

// restrictive checks a container's security context, with the pod's as the fallback for what both can set.
func restrictive(t *testing.T, where string, pod *securityContext, c *container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("%s: container %s has no securityContext", where, c.Name)
		return
	}
	nonRoot := sc.RunAsNonRoot != nil && *sc.RunAsNonRoot || sc.RunAsNonRoot == nil && pod != nil && pod.RunAsNonRoot != nil && *pod.RunAsNonRoot
	if !nonRoot {
		t.Errorf("%s: container %s: runAsNonRoot is not true", where, c.Name)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: container %s: readOnlyRootFilesystem is not true", where, c.Name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: container %s: allowPrivilegeEscalation is not false", where, c.Name)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: container %s: capabilities must drop ALL and add none", where, c.Name)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && pod != nil {
		seccomp = pod.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != "RuntimeDefault" {
		t.Errorf("%s: container %s: seccompProfile is not RuntimeDefault", where, c.Name)
	}
	for _, kind := range []string{"cpu", "memory"} {
		if c.Resources.Requests[kind] == "" || c.Resources.Limits[kind] == "" {
			t.Errorf("%s: container %s: resources.requests and limits must set %s", where, c.Name, kind)
		}
	}
}

// TestManifestSecurityContexts checks the security context and resources of every container of every workload.
func TestManifestSecurityContexts(t *testing.T) {
	n := 0
	for _, o := range manifests(t) {
		switch o.Kind {
		case "Deployment", "StatefulSet", "Job", "DaemonSet":
		default:
			continue
		}
		s := o.spec(t)
		pod := s.Template.Spec
		where := o.Kind + "/" + o.Metadata.Name
		if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: the pod's securityContext must set runAsNonRoot: true", where)
		}
		for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
			restrictive(t, where, pod.SecurityContext, &c)
			n++
		}
	}
	if n < 3 {
		t.Errorf("only %d containers checked", n)
	}
}

// workerPod returns the workflow worker's pod spec and its two containers.
func workerPod(t *testing.T, objs []*object) (*podSpec, *container, *container) {
	t.Helper()
	dep := find(t, objs, "Deployment", "workflow-worker").spec(t)
	pod := &dep.Template.Spec
	side := containerNamed(pod.InitContainers, sidecarName)
	if side == nil {
		t.Fatalf("the Deployment has no init container %q (a native sidecar)", sidecarName)
	}
	worker := containerNamed(pod.Containers, workerName)
	if worker == nil {
		t.Fatalf("the Deployment has no container %q", workerName)
	}
	for k, v := range dep.Selector.MatchLabels {
		if dep.Template.Metadata.Labels[k] != v {
			t.Errorf("the selector %s=%s does not match the pod template's labels", k, v)
		}
	}
	return pod, side, worker
}

func TestManifestWorkerNativeSidecar(t *testing.T) {
	pod, side, worker := workerPod(t, manifests(t))
	if side.RestartPolicy != "Always" {
		t.Errorf("init container %s: restartPolicy %q; a native sidecar needs Always", side.Name, side.RestartPolicy)
	}
	if !strings.HasPrefix(side.Image, "ghcr.io/flovyn/eventhook") {
		t.Errorf("sidecar image %q", side.Image)
	}
	if len(side.Command) > 0 {
		t.Errorf("the sidecar overrides the image's entrypoint (eventhook serve) with %v", side.Command)
	}

	// The socket: one emptyDir, mounted at the same place in both containers, named by EVENTHOOK_SOCKET.
	var sockVol string
	for _, m := range side.VolumeMounts {
		if m.MountPath == socketDir {
			sockVol = m.Name
		}
	}
	if sockVol == "" {
		t.Fatalf("the sidecar mounts nothing at %s", socketDir)
	}
	if v := pod.volume(sockVol); v == nil || v.EmptyDir == nil {
		t.Errorf("volume %s (the socket directory) is not an emptyDir", sockVol)
	}
	for _, c := range []*container{side, worker} {
		if m := c.mount(sockVol); m == nil || m.MountPath != socketDir || m.ReadOnly {
			t.Errorf("container %s does not mount %s read-write at %s", c.Name, sockVol, socketDir)
		}
	}
	if e := worker.env("EVENTHOOK_SOCKET"); e == nil || e.Value != socketPath {
		t.Errorf("the worker's EVENTHOOK_SOCKET is not %s", socketPath)
	}
	// Both containers in the socket's group, so that mode 0660 lets the worker connect.
	if pod.SecurityContext == nil || pod.SecurityContext.FSGroup == nil || *pod.SecurityContext.FSGroup != sidecarUser {
		t.Errorf("the pod's securityContext.fsGroup must be %d (the sidecar's group, owner of the socket)", sidecarUser)
	}
	if sc := side.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != sidecarUser {
		t.Errorf("the sidecar must run as user %d", sidecarUser)
	}

	// The configuration: the ConfigMap eventhook-config mounted at /etc/eventhook and named by -config.
	cm := side.mount("eventhook-config")
	if cm == nil || cm.MountPath != configDir || !cm.ReadOnly {
		t.Errorf("the sidecar does not mount eventhook-config read-only at %s", configDir)
	}
	if v := pod.volume("eventhook-config"); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != "eventhook-config" {
		t.Errorf("volume eventhook-config is not the ConfigMap eventhook-config")
	}
	if !slices.Equal(side.Args, []string{"-config", configDir + "/config.yaml"}) {
		t.Errorf("sidecar args %v; want -config %s/config.yaml", side.Args, configDir)
	}

	// Probes: over HTTP on the API port, which needs no token for these paths.
	for _, p := range []struct {
		name string
		pr   *probe
		path string
	}{{"readinessProbe", side.ReadinessProbe, "/readyz"}, {"livenessProbe", side.LivenessProbe, "/healthz"}} {
		switch {
		case p.pr == nil || p.pr.HTTPGet == nil:
			t.Errorf("sidecar %s: want an httpGet probe on %s", p.name, p.path)
		case p.pr.HTTPGet.Path != p.path || side.portNumber(p.pr.HTTPGet.Port) != 8787:
			t.Errorf("sidecar %s: %s on port %s; want %s on 8787", p.name, p.pr.HTTPGet.Path, p.pr.HTTPGet.Port.Value, p.path)
		}
	}
	if side.StartupProbe == nil || side.StartupProbe.HTTPGet == nil || side.StartupProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("sidecar startupProbe: want httpGet /readyz (it holds the worker back until the sidecar is ready)")
	}
	if worker.LivenessProbe != nil && worker.LivenessProbe.HTTPGet != nil && worker.portNumber(worker.LivenessProbe.HTTPGet.Port) == 8787 {
		t.Errorf("the worker's liveness probe points at the sidecar's port")
	}
}

// sidecarConfig parses the configuration in the ConfigMap eventhook-config with the daemon's own loader.
func sidecarConfig(t *testing.T, objs []*object) *config.Config {
	t.Helper()
	cm := find(t, objs, "ConfigMap", "eventhook-config")
	text, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatalf("ConfigMap eventhook-config has no config.yaml")
	}
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatalf("the sidecar configuration in ConfigMap eventhook-config does not load: %v", err)
	}
	return cfg
}

func TestManifestSidecarConfig(t *testing.T) {
	objs := manifests(t)
	cfg := sidecarConfig(t, objs)
	_, side, _ := workerPod(t, objs)
	sts := find(t, objs, "StatefulSet", "nats").spec(t)

	if cfg.Backend != "jetstream" {
		t.Errorf("backend %q; want jetstream", cfg.Backend)
	}
	if cfg.NATS.IsEmbedded() {
		t.Error("nats.embedded must be false: the sidecars use the NATS cluster")
	}
	var want []string
	for i := range natsReplicas {
		want = append(want, fmt.Sprintf("nats://nats-%d.%s:4222", i, sts.ServiceName))
	}
	if !slices.Equal(cfg.NATS.URLs, want) {
		t.Errorf("nats.urls %v; want the StatefulSet's pods %v", cfg.NATS.URLs, want)
	}
	if cfg.JetStream.Replicas != natsReplicas {
		t.Errorf("jetstream.replicas %d; want %d", cfg.JetStream.Replicas, natsReplicas)
	}
	if cfg.JetStream.ManageStreams == nil || *cfg.JetStream.ManageStreams {
		t.Error("jetstream.manage_streams must be false: the streams are managed with the cluster (the Job)")
	}
	if cfg.HTTP.UnixSocket != socketPath || cfg.HTTP.UnixSocketMode != "0660" {
		t.Errorf("http.unix_socket %q mode %q; want %s, 0660", cfg.HTTP.UnixSocket, cfg.HTTP.UnixSocketMode, socketPath)
	}
	host, port, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil || port != "8787" {
		t.Errorf("http.listen %q; want port 8787 (the probes' and port-forward's)", cfg.HTTP.Listen)
	}
	if !slices.ContainsFunc(side.Ports, func(p containerPort) bool { return p.ContainerPort == 8787 }) {
		t.Error("the sidecar does not declare container port 8787")
	}
	// The kubelet probes the pod IP: a loopback listener would never be probed successfully.
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		t.Errorf("http.listen %q is loopback: the kubelet's httpGet probes could not reach it", cfg.HTTP.Listen)
	}
	if cfg.Auth.AllowUnauthenticatedTCP {
		t.Error("auth.allow_unauthenticated_tcp must be false")
	}
	if len(cfg.Auth.Tokens) == 0 {
		t.Fatal("auth.tokens is empty")
	}
	for _, tok := range cfg.Auth.Tokens {
		if tok.Env == "" {
			t.Errorf("token %s: give it through an environment variable from a Secret, not in the ConfigMap", tok.Name)
			continue
		}
		e := side.env(tok.Env)
		if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name == "" {
			t.Errorf("token %s: the sidecar does not set %s from a Secret", tok.Name, tok.Env)
		}
	}
	if cfg.Memory.MaxBytes <= 0 || cfg.Memory.MaxBytes >= 256<<20 {
		t.Errorf("memory.max_bytes %d must stay well under the container's memory limit (256Mi)", cfg.Memory.MaxBytes)
	}
}

func TestManifestNATSCluster(t *testing.T) {
	objs := manifests(t)
	sts := find(t, objs, "StatefulSet", "nats").spec(t)
	if sts.Replicas == nil || *sts.Replicas != natsReplicas {
		got := "unset"
		if sts.Replicas != nil {
			got = strconv.Itoa(*sts.Replicas)
		}
		t.Errorf("StatefulSet nats: replicas %s; want %d", got, natsReplicas)
	}
	headless := find(t, objs, "Service", sts.ServiceName).spec(t)
	if headless.ClusterIP != "None" || !headless.PublishNotReady {
		t.Errorf("Service %s must be headless (clusterIP: None) and publish not-ready addresses", sts.ServiceName)
	}
	for k, v := range headless.ServiceSelector {
		if sts.Template.Metadata.Labels[k] != v {
			t.Errorf("Service %s selects %s=%s, which the NATS pods lack", sts.ServiceName, k, v)
		}
	}
	if len(sts.VolumeClaimTemplates) == 0 {
		t.Fatal("StatefulSet nats has no volumeClaimTemplates")
	}
	c := containerNamed(sts.Template.Spec.Containers, "nats")
	if c == nil {
		t.Fatal("StatefulSet nats has no container nats")
	}
	if !strings.HasPrefix(c.Image, "nats:2.") {
		t.Errorf("NATS image %q; want nats:2.x", c.Image)
	}
	dataMount := c.mount(sts.VolumeClaimTemplates[0].Metadata.Name)
	if dataMount == nil {
		t.Fatal("the NATS container does not mount its PersistentVolume")
	}

	// The server configuration, loaded by nats-server's own parser as pod nats-1 would.
	conf := find(t, objs, "ConfigMap", "nats-config").Data["nats-server.conf"]
	path := filepath.Join(t.TempDir(), "nats-server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "nats-1")
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server.conf does not load: %v", err)
	}
	if opts.ServerName != "nats-1" {
		t.Errorf("server_name %q; want the pod's name", opts.ServerName)
	}
	if !opts.JetStream {
		t.Error("nats-server.conf does not enable JetStream")
	}
	if !strings.HasPrefix(opts.StoreDir, dataMount.MountPath+"/") && opts.StoreDir != dataMount.MountPath {
		t.Errorf("jetstream store_dir %q is not on the PersistentVolume (%s)", opts.StoreDir, dataMount.MountPath)
	}
	if opts.Cluster.Name == "" || opts.Cluster.Port != 6222 {
		t.Errorf("cluster name %q port %d", opts.Cluster.Name, opts.Cluster.Port)
	}
	var routes []string
	for _, r := range opts.Routes {
		routes = append(routes, r.Host)
	}
	var wantRoutes []string
	for i := range natsReplicas {
		wantRoutes = append(wantRoutes, fmt.Sprintf("nats-%d.%s:6222", i, sts.ServiceName))
	}
	if !slices.Equal(routes, wantRoutes) {
		t.Errorf("cluster routes %v; want %v", routes, wantRoutes)
	}
	if opts.Port != 4222 || opts.HTTPPort != 8222 {
		t.Errorf("client port %d, monitoring port %d; want 4222, 8222", opts.Port, opts.HTTPPort)
	}
	if find(t, objs, "PodDisruptionBudget", "nats") == nil {
		t.Error("no PodDisruptionBudget for nats")
	}
}

// TestManifestStreams checks the streams the Job creates against the sidecar configuration of workflow-worker.yaml, so
// that a sidecar starting with manage_streams false (sidecar/natsbus/jsstreams.go) finds them as configured and logs no
// difference: subjects, storage (file for the events and the index, jetstream.streams_storage for the generic streams),
// limits retention, a duplicate window at least jetstream.duplicate_window, replicas and max age as configured.
func TestManifestStreams(t *testing.T) {
	objs := manifests(t)
	cfg := sidecarConfig(t, objs)
	cm := find(t, objs, "ConfigMap", "flovyn-streams")
	js := cfg.JetStream
	want := map[string]struct {
		subject string
		maxAge  time.Duration
	}{
		js.EventsStream:            {subjects.AllEvents, js.EventsMaxAge.D()},
		js.EventsStream + "_INDEX": {natsbus.IndexPrefix + ">", js.EventsMaxAge.D()},
		js.StreamsStream:           {subjects.AllStreams, js.StreamsMaxAge.D()},
	}
	if len(cm.Data) != len(want) {
		t.Errorf("ConfigMap flovyn-streams has %d streams; want %d", len(cm.Data), len(want))
	}
	for key, text := range cm.Data {
		var sc jetstream.StreamConfig
		dec := json.NewDecoder(strings.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sc); err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		w, ok := want[sc.Name]
		if !ok || key != sc.Name+".json" {
			t.Errorf("%s defines stream %q; the sidecar uses %v", key, sc.Name, mapsKeys(want))
			continue
		}
		delete(want, sc.Name)
		if !slices.Equal(sc.Subjects, []string{w.subject}) {
			t.Errorf("%s: subjects %v; want [%s]", sc.Name, sc.Subjects, w.subject)
		}
		storage := jetstream.FileStorage
		if sc.Name == js.StreamsStream && js.StreamsStorage == "memory" {
			storage = jetstream.MemoryStorage
		}
		if sc.Storage != storage || sc.Retention != jetstream.LimitsPolicy {
			t.Errorf("%s: storage %s retention %s; want %s, limits", sc.Name, sc.Storage, sc.Retention, storage)
		}
		if sc.Replicas != js.Replicas {
			t.Errorf("%s: %d replicas; the sidecars expect %d", sc.Name, sc.Replicas, js.Replicas)
		}
		if sc.MaxAge != w.maxAge {
			t.Errorf("%s: max_age %v; the sidecar's configuration says %v", sc.Name, sc.MaxAge, w.maxAge)
		}
		if sc.Duplicates < min(js.DuplicateWindow.D(), w.maxAge) {
			t.Errorf("%s: duplicate window %v is shorter than jetstream.duplicate_window %v", sc.Name, sc.Duplicates, js.DuplicateWindow.D())
		}
		if sc.Duplicates < 2*time.Minute {
			t.Errorf("%s: duplicate window %v; want at least 2m", sc.Name, sc.Duplicates)
		}
		if !sc.AllowDirect {
			t.Errorf("%s: allow_direct is off (the sidecar reads by sequence with direct gets)", sc.Name)
		}
	}
	for name := range want {
		t.Errorf("no stream %s in ConfigMap flovyn-streams", name)
	}

	job := find(t, objs, "Job", "eventhook-streams").spec(t)
	var mountsStreams bool
	for _, v := range job.Template.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == "flovyn-streams" {
			for _, c := range job.Template.Spec.Containers {
				mountsStreams = mountsStreams || c.mount(v.Name) != nil
			}
		}
	}
	if !mountsStreams {
		t.Error("the Job eventhook-streams does not mount the ConfigMap flovyn-streams")
	}
}

func mapsKeys[V any](m map[string]V) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// instruction is one Dockerfile instruction: its keyword, its arguments (continuation lines joined) and the bodies of
// its here-documents.
type instruction struct {
	cmd     string
	args    string
	heredoc []string
	line    int
}

var heredocRe = regexp.MustCompile(`<<-?["']?([A-Za-z_][A-Za-z0-9_]*)["']?`)

// parseDockerfile reads a Dockerfile into instructions: comments and blank lines are skipped, lines ending in a
// backslash are joined, here-documents (<<EOF … EOF) are collected.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var out []instruction
	var cur strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if m := heredocRe.FindStringSubmatch(in.args); m != nil {
			var body []string
			for sc.Scan() {
				n++
				if strings.TrimSpace(sc.Text()) == m[1] {
					break
				}
				body = append(body, sc.Text())
			}
			in.heredoc = body
		}
		out = append(out, in)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// stage is one FROM of a Dockerfile with its instructions.
type stage struct {
	from, name string
	body       []instruction
}

func dockerStages(t *testing.T) (stages []stage, args map[string]string) {
	t.Helper()
	args = map[string]string{}
	for _, in := range parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile")) {
		switch {
		case in.cmd == "FROM":
			var words []string
			for _, w := range strings.Fields(in.args) {
				if !strings.HasPrefix(w, "--") {
					words = append(words, w)
				}
			}
			s := stage{from: expand(words[0], args)}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				s.name = words[2]
			}
			stages = append(stages, s)
		case len(stages) == 0 && in.cmd == "ARG":
			name, def, _ := strings.Cut(in.args, "=")
			args[name] = def
		case len(stages) > 0:
			stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
		}
	}
	return stages, args
}

var varRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// expand replaces ${NAME}, ${NAME:-default} and $NAME with their values in vars.
func expand(s string, vars map[string]string) string {
	return varRe.ReplaceAllStringFunc(s, func(m string) string {
		sub := varRe.FindStringSubmatch(m)
		name := sub[1] + sub[4]
		if v := vars[name]; v != "" {
			return v
		}
		return sub[3]
	})
}

// goBuild is the go build command line of the build stage: the environment assignments before `go`, and the
// arguments.
type goBuild struct {
	env  []string
	args []string
}

// dockerGoBuild finds the RUN instruction with `go build` and splits it into words (shell quoting: double quotes).
func dockerGoBuild(t *testing.T, stages []stage) (*goBuild, stage) {
	t.Helper()
	for _, s := range stages {
		for _, in := range s.body {
			if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
				continue
			}
			words := shellWords(t, in.args)
			for len(words) > 0 && strings.HasPrefix(words[0], "--") { // RUN --mount=…
				words = words[1:]
			}
			b := &goBuild{}
			for len(words) > 0 && strings.Contains(words[0], "=") {
				b.env = append(b.env, words[0])
				words = words[1:]
			}
			if len(words) < 2 || words[0] != "go" || words[1] != "build" {
				t.Fatalf("Dockerfile line %d: cannot read the go build command: %s", in.line, in.args)
			}
			b.args = words[2:]
			return b, s
		}
	}
	t.Fatal("the Dockerfile has no RUN … go build")
	return nil, stage{}
}

// shellWords splits a command line into words, honouring double and single quotes; it refuses what it does not
// understand (operators), so that the test runs exactly what the Dockerfile says.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	in := false
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case strings.IndexByte("&|;<>`", c) >= 0:
			t.Fatalf("the go build RUN uses shell operators (%q), which this test does not run: %s", c, s)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

func TestDockerfile(t *testing.T) {
	stages, _ := dockerStages(t)
	if len(stages) < 2 {
		t.Fatalf("the Dockerfile has %d stage(s); want a multi-stage build", len(stages))
	}
	// The build stage's Go matches go.mod's go line (major.minor).
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	build, buildStage := dockerGoBuild(t, stages)
	if want := "golang:" + string(m[1]); buildStage.from != want && !strings.HasPrefix(buildStage.from, want+".") &&
		!strings.HasPrefix(buildStage.from, want+"-") {
		t.Errorf("build stage FROM %s; want %s (go.mod's go line)", buildStage.from, want)
	}
	if !slices.Contains(build.env, "CGO_ENABLED=0") {
		t.Errorf("go build runs with %v; want CGO_ENABLED=0 (a static binary)", build.env)
	}
	if !slices.Contains(build.args, "-trimpath") {
		t.Errorf("go build %v lacks -trimpath", build.args)
	}
	ldflags := flagValue(build.args, "-ldflags")
	for _, want := range []string{"-s", "-w", "-X", versionPackage + "=${VERSION}"} {
		if !slices.Contains(strings.Fields(ldflags), want) {
			t.Errorf("go build -ldflags %q lacks %s", ldflags, want)
		}
	}

	final := stages[len(stages)-1]
	if strings.HasPrefix(final.from, "golang") {
		t.Errorf("the runtime stage is FROM %s; want a small image", final.from)
	}
	var user, entrypoint, cmd string
	var copied []string
	var defaultConfig []string
	for _, in := range final.body {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "CMD":
			cmd = in.args
		case "COPY":
			copied = append(copied, in.args)
			if strings.HasSuffix(in.args, configDir+"/config.yaml") && in.heredoc != nil {
				defaultConfig = in.heredoc
			}
		case "RUN":
			t.Errorf("Dockerfile line %d: RUN in the runtime stage (it has no shell): %s", in.line, in.args)
		}
	}
	nonroot := strings.HasSuffix(final.from, ":nonroot") || strings.Contains(final.from, ":nonroot-")
	if user != "" {
		uid, _, _ := strings.Cut(user, ":")
		if uid == "0" || uid == "root" {
			t.Errorf("USER %s runs as root", user)
		}
		nonroot = nonroot || uid == strconv.Itoa(sidecarUser) || uid == "nonroot"
	}
	if !nonroot {
		t.Errorf("the runtime stage (FROM %s, USER %q) is not non-root", final.from, user)
	}
	var ep, cm []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || !slices.Equal(ep, []string{"/eventhook", "serve"}) {
		t.Errorf(`ENTRYPOINT %s; want ["/eventhook", "serve"] (exec form)`, entrypoint)
	}
	if err := json.Unmarshal([]byte(cmd), &cm); err != nil || !slices.Equal(cm, []string{"-config", configDir + "/config.yaml"}) {
		t.Errorf(`CMD %s; want ["-config", "%s/config.yaml"]`, cmd, configDir)
	}
	if !slices.ContainsFunc(copied, func(s string) bool { return strings.HasSuffix(s, " /eventhook") }) {
		t.Errorf("the runtime stage does not COPY the binary to /eventhook: %v", copied)
	}

	// The image's default configuration loads, and uses the documented directories.
	if defaultConfig == nil {
		t.Fatalf("the runtime stage has no default configuration (COPY <<EOF %s/config.yaml)", configDir)
	}
	cfg, err := config.Parse([]byte(strings.Join(defaultConfig, "\n")))
	if err != nil {
		t.Fatalf("the image's default configuration does not load: %v", err)
	}
	if cfg.HTTP.UnixSocket != socketPath || cfg.NATS.StoreDir != "/var/lib/eventhook" {
		t.Errorf("default configuration: socket %q, store_dir %q; want %s, /var/lib/eventhook", cfg.HTTP.UnixSocket, cfg.NATS.StoreDir, socketPath)
	}
	for _, dir := range []string{socketDir, "/var/lib/eventhook"} {
		if !slices.ContainsFunc(copied, func(s string) bool {
			return strings.Contains(s, "--chown=65532:65532") && strings.HasSuffix(s, " "+dir)
		}) {
			t.Errorf("the runtime stage does not create %s owned by 65532", dir)
		}
	}

	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(ignore), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	for _, want := range []string{".git", "data"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
	for _, keep := range []string{"go.mod", "go.sum", "*.go", "**/*.go", "sidecar", "subjects"} {
		if slices.Contains(patterns, keep) {
			t.Errorf(".dockerignore excludes %s, which the build needs", keep)
		}
	}
}

// flagValue returns the value of a flag given as "-name value" or "-name=value".
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// TestDockerBuildCommand runs the Dockerfile's go build command line here (same environment and flags; the output in
// a temporary directory) and checks that the binary is static — no program interpreter, no shared libraries, so it
// runs on distroless/static or scratch — and carries the version given at build time.
func TestDockerBuildCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	stages, globals := dockerStages(t)
	build, _ := dockerGoBuild(t, stages)
	const version = "v0.0.0-docker-test"
	vars := map[string]string{"VERSION": version, "TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH}
	for k, v := range globals {
		if vars[k] == "" {
			vars[k] = v
		}
	}
	out := filepath.Join(t.TempDir(), "eventhook")
	args := []string{"build"}
	for i := 0; i < len(build.args); i++ {
		a := expand(build.args[i], vars)
		if a == "-o" && i+1 < len(build.args) {
			args = append(args, "-o", out)
			i++
			continue
		}
		args = append(args, a)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot
	cmd.Env = os.Environ()
	var env []string
	for _, e := range build.env {
		env = append(env, expand(e, vars))
	}
	cmd.Env = append(cmd.Env, env...)
	t.Logf("%s go %q", strings.Join(env, " "), args)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, b)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatalf("the binary is not ELF: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a program interpreter (PT_INTERP): it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: -ldflags -s did not apply")
	}
	if info, err := os.Stat(out); err == nil {
		t.Logf("static binary: %.1f MiB", float64(info.Size())/(1<<20))
	}

	v, err := exec.Command(out, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("eventhook version: %v\n%s", err, v)
	}
	if got := strings.TrimSpace(string(v)); !strings.HasPrefix(got, "eventhook "+version+" (") {
		t.Errorf("eventhook version printed %q; want %q and the Go and NATS versions", got, "eventhook "+version)
	}
}
