"""The WSGI application gunicorn serves: ``gunicorn kiosk_central.site.wsgi`` with ``KIOSK_CENTRAL_CONFIG`` set."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiosk_central.site.settings")
application = get_wsgi_application()
