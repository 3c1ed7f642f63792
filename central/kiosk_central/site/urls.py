"""The site's URLs: the HR application at /, Django's admin at /admin/."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("kiosk_central.hr.urls")),
]
