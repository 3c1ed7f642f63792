# gunicorn for the central HR web (kiosk-central web --gunicorn-config /etc/kiosk/gunicorn.conf.py, or
# gunicorn -c this file kiosk_central.site.wsgi). nginx in front buffers whole requests (client_header_timeout,
# client_body_timeout, client_max_body_size), so sync workers never wait on a slow client; `timeout` is the backstop
# when something reaches gunicorn directly. See docs/central.md, "Deployment (web)".
import multiprocessing

bind = "127.0.0.1:8080"  # `kiosk-central web` takes web.host and web.port from central.toml instead
worker_class = "sync"
workers = min(2 * multiprocessing.cpu_count() + 1, 8)
timeout = 30  # seconds a request (or a client that reached gunicorn without nginx) may hold a worker
graceful_timeout = 20
keepalive = 2
limit_request_line = 4094  # bytes of the request line (method, path, query)
limit_request_fields = 50  # header fields
limit_request_field_size = 8190  # bytes per header field
max_requests = 2000  # renew workers now and then
max_requests_jitter = 200
forwarded_allow_ips = "127.0.0.1,::1"  # X-Forwarded-Proto is believed from nginx on this host only
accesslog = None  # nginx logs requests; paths and addresses are personal data enough
errorlog = "-"  # the journal
loglevel = "info"
proc_name = "kiosk-central-web"
control_socket_disable = True
umask = 0o077  # anything gunicorn or the site creates is the service user's only
