from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0002_outbox_leases"),
    ]

    operations = [
        migrations.RenameModel(old_name="RelayHeartbeat", new_name="Heartbeat"),
        migrations.AlterField(
            model_name="heartbeat",
            name="name",
            field=models.CharField(max_length=200, primary_key=True, serialize=False),
        ),
    ]
