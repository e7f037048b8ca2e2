"""The bookshop's pages. Nothing here mentions OpenTelemetry: the user and the route names
come from ``django.contrib.auth`` and the URLconf under ``opentelemetry-instrument``."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse

BOOKS = {1: "The Left Hand of Darkness", 2: "A Wizard of Earthsea"}


def home(request):
    # Never reads request.user: the page costs no session or user query, traced or not.
    return HttpResponse('<h1>Bookshop</h1><a href="/accounts/login/">log in</a>')


@login_required
def book_list(request):
    return JsonResponse({"books": BOOKS, "reader": request.user.get_username()})


@login_required
def book_detail(request, pk):
    return JsonResponse({"id": pk, "title": BOOKS.get(pk), "reader": request.user.get_username()})


def boom(request):
    raise RuntimeError("the stock service is down")  # Django's 500 page; one exception event
