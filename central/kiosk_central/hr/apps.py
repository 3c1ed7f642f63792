from django.apps import AppConfig


class HrConfig(AppConfig):
    name = "kiosk_central.hr"
    label = "hr"
    verbose_name = "Kepegawaian (HR)"
    default_auto_field = "django.db.models.BigAutoField"
