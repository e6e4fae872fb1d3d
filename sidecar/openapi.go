package sidecar

import (
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/flovyn/eventhook/sidecar/config"
	"github.com/flovyn/eventhook/sidecar/event"
)

// The OpenAPI document is generated from the route table, so no route can be missing from it.

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

func (s *Server) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	s.openapiOnce.Do(func() { s.openapiDoc = s.openAPI() })
	writeJSON(w, http.StatusOK, s.openapiDoc)
}

type openapiCache struct {
	openapiOnce sync.Once
	openapiDoc  map[string]any
}

func (s *Server) openAPI() map[string]any {
	paths := map[string]any{}
	for _, rt := range s.routes {
		item, _ := paths[rt.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.path] = item
		}
		item[strings.ToLower(rt.method)] = operation(rt)
	}
	problem := map[string]any{"$ref": "#/components/schemas/Problem"}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "eventhook",
			"version":     Version,
			"description": "Flovyn's event sidecar: publish lifecycle events and generic streams, subscribe with Server-Sent Events.",
		},
		"paths": paths,
		"components": map[string]any{
			"schemas": map[string]any{
				"FlovynEvent":   flovynEventSchema,
				"StreamEvent":   streamEventSchema,
				"PublishResult": publishResultSchema,
				"Problem": map[string]any{"type": "object", "description": "RFC 9457 problem details",
					"properties": map[string]any{"type": str, "title": str, "status": integer, "detail": str,
						"errors": map[string]any{"type": "array", "items": map[string]any{"type": "object",
							"properties": map[string]any{"field": str, "message": str}}},
						"results": map[string]any{"type": "array", "items": map[string]any{"$ref": "#/components/schemas/PublishResult"}}}},
			},
			"responses": map[string]any{"Problem": map[string]any{"description": "An error",
				"content": map[string]any{"application/problem+json": map[string]any{"schema": problem}}}},
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
		},
	}
}

var (
	str        = map[string]any{"type": "string"}
	integer    = map[string]any{"type": "integer"}
	nullUUID   = map[string]any{"type": []string{"string", "null"}, "format": "uuid"}
	anyJSON    = map[string]any{"description": "any JSON value"}
	problemRef = map[string]any{"$ref": "#/components/responses/Problem"}

	flovynEventSchema = map[string]any{"type": "object", "additionalProperties": false, "required": []string{"event_type"},
		"properties": map[string]any{
			"id": map[string]any{"type": "string", "format": "uuid"}, "tenant_id": map[string]any{"type": "string", "format": "uuid"},
			"org_id": map[string]any{"type": "string", "format": "uuid",
				"description": "another name of tenant_id (sent with it, it must name the same tenant); events.tenant_key: org_id writes it in place of tenant_id"},
			"workflow_execution_id": nullUUID, "task_execution_id": nullUUID,
			"event_type": map[string]any{"type": "string", "maxLength": 255, "pattern": `^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`},
			"source":     map[string]any{"type": "string", "maxLength": 255}, "data": anyJSON,
			"timestamp_ms": integer, "correlation_id": map[string]any{"type": []string{"string", "null"}, "maxLength": 255}}}
	streamEventSchema = map[string]any{"type": "object", "additionalProperties": false, "required": []string{"type"},
		"properties": map[string]any{"workflowExecutionId": str, "taskExecutionId": str, "sequence": integer,
			"type":    map[string]any{"type": "string", "enum": []string{"TOKEN", "PROGRESS", "DATA", "ERROR"}},
			"payload": str, "timestampMs": integer}}
	publishResultSchema = map[string]any{"type": "object", "properties": map[string]any{
		"index": integer, "id": str, "sequence": integer, "duplicate": map[string]any{"type": "boolean"},
		"converted_to": str,
		"error":        map[string]any{"type": "object", "properties": map[string]any{"status": integer, "detail": str}}}}
)

func param(name, in, desc string, required bool) map[string]any {
	return map[string]any{"name": name, "in": in, "description": desc, "required": required, "schema": str}
}

func operation(rt route) map[string]any {
	op := map[string]any{"summary": rt.summary, "operationId": operationID(rt)}
	var params []any
	for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
		params = append(params, param(m[1], "path", "a workflow or task execution id (a UUID, or another subject-safe id)", true))
	}
	tenant := param(event.TenantHeader, "header", "the tenant, when the body or query does not name it", false)
	org := param(event.OrgHeader, "header", "another name of "+event.TenantHeader+" (sent with it, it must name the same tenant)", false)
	switch rt.kind {
	case routePublish:
		params = append(params, tenant, org)
		body := map[string]any{"$ref": "#/components/schemas/FlovynEvent"}
		if strings.HasPrefix(rt.path, "/v1/streams") {
			body = map[string]any{"$ref": "#/components/schemas/StreamEvent"}
		}
		many := map[string]any{"type": "array", "items": body, "maxItems": 1000}
		content := map[string]any{"application/json": map[string]any{"schema": body}}
		if rt.path != "/v1/events" {
			content["application/json"] = map[string]any{"schema": map[string]any{"oneOf": []any{body, many}}}
			content["application/x-ndjson"] = map[string]any{"schema": str, "description": "one JSON object per line"}
		}
		op["requestBody"] = map[string]any{"required": true, "content": content}
		op["responses"] = map[string]any{
			"202": map[string]any{"description": "stored (with jetstream: acknowledged by JetStream)",
				"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/PublishResult"}}}},
			"400": problemRef, "401": problemRef, "403": problemRef, "413": problemRef, "415": problemRef, "503": problemRef,
		}
		op["security"] = []any{map[string]any{}, map[string]any{"bearer": []any{}}}
	case routeStream:
		params = append(params, tenant, org,
			param("tenant_id", "query", "the tenant", false),
			param("org_id", "query", "another name of tenant_id (sent with it, it must name the same tenant)", false),
			param("types", "query", "comma list: kinds (events, tokens, progress, data, errors), exact lifecycle types, categories, or prefixes such as workflow.*", false),
			param("last_event_id", "query", "resume after this cursor (or earliest); the Last-Event-ID header wins", false),
			param("Last-Event-ID", "header", "resume after this cursor (or earliest); a value this server cannot read "+
				"gives a reset gap, then the stream as without a cursor", false),
			param("access_token", "query", "a bearer token, for EventSource clients", false))
		format := param("format", "query", "the framing of lifecycle events: eventhook (event: lifecycle, the FlovynEvent) or "+
			"flovyn (a type with a legacy name as Flovyn's server frames it: event: data, a StateEventPayload); default sse.format", false)
		format["schema"] = map[string]any{"type": "string", "enum": []string{config.FormatEventhook, config.FormatFlovyn}}
		switch {
		case strings.HasPrefix(rt.path, "/task-executions"):
			params = append(params, format, param("workflow_execution_id", "query", "the workflow of the task, to get its generic stream events", false))
		case rt.path == "/events/stream":
			format["description"] = "the framing of lifecycle events: always eventhook on the tenant stream (a StateEventPayload names no workflow)"
			format["schema"] = map[string]any{"type": "string", "enum": []string{config.FormatEventhook}}
			params = append(params, format, param("source", "query", "only events of this source", false),
				param("workflow_execution_id", "query", "only events of this workflow", false),
				param("task_execution_id", "query", "only events of this task", false))
		default:
			params = append(params, format)
		}
		op["responses"] = map[string]any{
			"200": map[string]any{"description": "Server-Sent Events: event lifecycle|token|progress|data|stream-error|gap, id = cursor (a stream ERROR is stream-error, not error, which EventSource reserves for a lost connection; format=flovyn frames it error, as Flovyn's server does)",
				"content": map[string]any{"text/event-stream": map[string]any{"schema": str}}},
			"400": problemRef, "401": problemRef, "403": problemRef, "429": problemRef, "503": problemRef,
		}
		op["security"] = []any{map[string]any{}, map[string]any{"bearer": []any{}}}
	default:
		op["responses"] = map[string]any{"200": map[string]any{"description": "OK"}, "503": problemRef}
	}
	if len(params) > 0 {
		op["parameters"] = params
	}
	return op
}

func operationID(rt route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.method))
	for _, part := range strings.FieldsFunc(rt.path, func(r rune) bool { return r == '/' || r == '-' || r == '.' || r == '{' || r == '}' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}
