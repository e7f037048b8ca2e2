from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo reader jane (password: correct horse battery), in the group readers."

    def handle(self, *args, **options):
        user, created = User.objects.get_or_create(username="jane", defaults={"email": "jane@example.com"})
        if created:
            user.set_password("correct horse battery")
            user.save()
        user.groups.add(Group.objects.get_or_create(name="readers")[0])
        self.stdout.write("demo user: jane / correct horse battery")
