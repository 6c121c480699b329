"""A session taken out of Tether and brought back: its log as a JSON document, the
conversation as Markdown, and a document imported as a new session.

document.py   the export document: the session, its tasks, events in seq order and files
markdown.py   the conversation as read (the branch shown), or a task tree, as Markdown
importer.py   a document checked whole and written as a new session, in one transaction
"""
