"""The routes of the web app: pages, media (previews and dataset images) and the JSON API."""
