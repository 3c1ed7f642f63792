"""The rules pages' URLs, under ``/aturan/`` (central/kiosk_central/site/urls.py). NIPs go in form posts only,
never in a path; the list's NIP filter is the one query parameter that may hold one."""

from django.urls import path

from kiosk_central.hr import hours_views, rules_views

urlpatterns = [
    path("", rules_views.home, name="rules"),
    path("keterangan/", rules_views.excused, name="excused"),
    path("keterangan/tambah/", rules_views.excused_add, name="excused_add"),
    path("keterangan/hapus/", rules_views.excused_delete, name="excused_delete"),
    path("libur/", rules_views.days_off, name="days_off"),
    path("libur/kirim/", rules_views.push_schedule, name="push_schedule"),
    path("jam/", hours_views.hours, name="hours"),
    path("potongan/", hours_views.deductions, name="deductions"),
    path("kios/", rules_views.kiosks, name="kiosks"),
]
