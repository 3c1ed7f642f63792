"""The site's URLs: the HR application at /, Django's admin at /admin/ (its login is the HR login, so that the
login throttle and audit hold for the admin too). Without a proxy serving STATIC_ROOT (the embedded
`kiosk-central web`), the static files are served here."""

from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.views import serve
from django.urls import include, path, re_path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/login/", RedirectView.as_view(url="/login/?next=/admin/", query_string=False)),
    path("admin/", admin.site.urls),
    path("aturan/", include("kiosk_central.hr.rules_urls")),
    path("", include("kiosk_central.hr.urls")),
]
if not settings.STATIC_ROOT:
    urlpatterns.append(re_path(r"^static/(?P<path>.*)$", serve, {"insecure": True}))

handler400 = "kiosk_central.hr.views.bad_request"
handler403 = "kiosk_central.hr.views.forbidden"
handler404 = "kiosk_central.hr.views.not_found"
handler500 = "kiosk_central.hr.views.server_error"
