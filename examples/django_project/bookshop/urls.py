from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

books = [
    path("", views.book_list, name="list"),
    path("<int:pk>/", views.book_detail, name="detail"),
]

urlpatterns = [
    path("", views.home),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("books/", include((books, "books"))),
    path("boom/", views.boom),
]
