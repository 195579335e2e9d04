from django.urls import path

from . import views

urlpatterns = [
    path("leader", views.leader),
    path("cluster", views.cluster),
]
