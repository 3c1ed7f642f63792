# ruff: noqa: E501, RUF012 - written like makemigrations' output
"""Where a day off was entered (``office_days_off.source``): ``rules`` (the rules file, which ``kiosk-central load``
replaces) or ``web`` (the HR page /aturan/libur/, which a load keeps). Every existing row becomes ``rules`` (the
column's default): before this migration a load replaced them all anyway. Backwards, the column is dropped."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ledger', '0003_employee_assignments'),
    ]

    operations = [
        migrations.AddField(
            model_name='officedayoff',
            name='source',
            field=models.TextField(db_default='rules'),
        ),
        migrations.AddConstraint(
            model_name='officedayoff',
            constraint=models.CheckConstraint(condition=models.Q(('source__in', ('rules', 'web'))), name='office_days_off_source_check'),
        ),
    ]
