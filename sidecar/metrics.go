package sidecar

import (
	"github.com/flovyn/eventhook/sidecar/bus"
	"github.com/flovyn/eventhook/sidecar/event"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the Prometheus metrics of the sidecar (prefix eventhook_). No label carries a tenant or workflow id.
type Metrics struct {
	published       *prometheus.CounterVec   // kind: event|stream
	duplicates      prometheus.Counter       // publishes answered duplicate: true
	rejected        *prometheus.CounterVec   // reason: invalid|too_large|unsupported_media_type|unauthorized|forbidden|unavailable
	delivered       *prometheus.CounterVec   // kind: lifecycle|token|progress|data|error
	dropped         *prometheus.CounterVec   // reason: lagged|untenanted|expired
	legacy          *prometheus.CounterVec   // known: true|false
	publishDuration *prometheus.HistogramVec // endpoint: event|batch|stream
	subscribers     prometheus.Gauge
	backendUp       prometheus.Gauge
	// unreadableCursors counts the streams opened with a cursor the sidecar cannot read (answered with a reset gap)
	unreadableCursors prometheus.Counter

	deliveredLifecycle prometheus.Counter    // delivered{kind="lifecycle"}, resolved once
	deliveredStream    [4]prometheus.Counter // by streamKindIndex
}

// registerBusMetrics adds the metrics the bus itself counts: messages received from NATS and discarded (invalid, or
// stream events without a tenant), publishes sent again, and the connection state.
func registerBusMetrics(reg prometheus.Registerer, b bus.Bus) error {
	var cs []prometheus.Collector
	if dc, ok := b.(bus.DropCounter); ok {
		for _, reason := range []string{"invalid", "untenanted"} {
			cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "eventhook_received_dropped_total", Help: "Messages received from NATS and discarded, by reason.",
				ConstLabels: prometheus.Labels{"reason": reason},
			}, func() float64 {
				invalid, untenanted := dc.Dropped()
				if reason == "invalid" {
					return float64(invalid)
				}
				return float64(untenanted)
			}))
		}
	}
	if rc, ok := b.(bus.ResendCounter); ok {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "eventhook_publish_resends_total",
			Help: "Times the lifecycle events of a publish were sent again after no ack came for a second (a stream leader election).",
		}, func() float64 { return float64(rc.Resent()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// NewMetrics creates the metrics and registers them with reg (a fresh registry in tests, prometheus.DefaultRegisterer
// or a daemon-wide registry in production). It returns an error when a metric is already registered there.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventhook_published_total", Help: "Events stored by the backend, by kind (event, stream).",
		}, []string{"kind"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventhook_duplicate_total", Help: "Publishes of an event id already stored within the dedup window.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventhook_rejected_total", Help: "Publish requests refused, by reason.",
		}, []string{"reason"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventhook_delivered_total", Help: "Events written to SSE subscribers, by SSE event name.",
		}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventhook_dropped_total", Help: "Events a subscriber missed or the sidecar discarded, by reason.",
		}, []string{"reason"}),
		legacy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventhook_legacy_converted_total", Help: "Legacy StateEventPayload publishes converted to lifecycle events, by whether the name was known.",
		}, []string{"known"}),
		publishDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eventhook_publish_duration_seconds",
			Help:    "Time from a publish request's arrival to its answer, by endpoint.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"endpoint"}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventhook_sse_subscribers", Help: "SSE streams open now.",
		}),
		backendUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventhook_backend_ready", Help: "1 when the last readiness check of the backend passed, 0 when not.",
		}),
		unreadableCursors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventhook_unreadable_cursors_total",
			Help: "SSE streams opened with a Last-Event-ID this sidecar cannot read (another server's id, a truncated cursor), answered with a reset gap.",
		}),
	}
	m.deliveredLifecycle = m.delivered.WithLabelValues("lifecycle")
	for _, k := range []event.StreamEventType{event.StreamToken, event.StreamProgress, event.StreamData, event.StreamError} {
		m.deliveredStream[event.StreamKindIndex(k)] = m.delivered.WithLabelValues(k.SSEName())
	}
	for _, c := range []prometheus.Collector{m.published, m.duplicates, m.rejected, m.delivered, m.dropped, m.legacy,
		m.publishDuration, m.subscribers, m.backendUp, m.unreadableCursors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
