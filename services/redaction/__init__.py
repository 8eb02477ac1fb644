"""Redaction of shipping labels on parcel photos: barcodes, QR codes and text blocks found on a frame (pure
functions on RGB arrays, no I/O; ``labels``), and the boxes stored per review photo (``store``)."""
