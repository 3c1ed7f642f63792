"""The HR application's URLs (case ids are the only personal-data-free values in them)."""

from django.urls import path

from kiosk_central.hr import views

urlpatterns = [
    path("", views.home),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("queue/", views.queue, name="queue"),
    path("decided/", views.decided, name="decided"),
    path("case/<int:case_id>/", views.case_page, name="case"),
    path("case/<int:case_id>/photo/", views.photo, name="photo"),
    path("case/<int:case_id>/reference/<slug:slot>/", views.reference, name="reference"),
    path("case/<int:case_id>/decide/", views.decide, name="decide"),
    path("case/<int:case_id>/second/", views.second, name="second"),
    path("recap/", views.recap, name="recap"),
    path("audit/", views.audit, name="audit"),
    path("roster/", views.roster, name="roster"),
]
