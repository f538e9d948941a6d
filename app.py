"""Try the model in a browser: a page where you drop, paste, pick or photograph characters, and a JSON API.

    python app.py                                    # http://127.0.0.1:8000 with the default model
    python app.py --model saved/model/model_new.h5 --port 8080
    python app.py --host 0.0.0.0                     # reachable from other machines too
    curl -F image=@photo.png -F image=@other.jpg http://127.0.0.1:8000/api/predict
    curl --data-binary @photo.png "http://127.0.0.1:8000/api/predict?top=3"
    curl http://127.0.0.1:8000/api/health

The page (web/) is plain HTML, CSS and JavaScript served by the app: no CDN, no build step. The model is
chosen as test.py chooses it, loaded once, and runs on LiteRT where it has a LiteRT copy (export.py).

Why Flask: a prediction is synchronous CPU work on one model held in memory, so an asynchronous server
gains nothing; Flask parses multipart uploads, refuses a request over a size before reading it
(MAX_CONTENT_LENGTH), and is small and well kept. Its threaded server is meant for one machine, which is
what this page is for; behind a public address, run create_app() under a WSGI server such as gunicorn.
"""

import argparse
import os
import sys
import threading

import numpy as np

import checkpoint
import data

WEB_DIR = os.path.join(checkpoint.REPO_DIR, "web")
MAX_IMAGES = 32  # per request
MAX_REQUEST_MB = 20
TOP = 5


def create_app(model_path=None, use_keras=False):
    """The Flask application: the page, GET /api/health and POST /api/predict, with the model loaded once."""
    from flask import Flask, jsonify, request

    model, info, path, runtime = checkpoint.open_chosen_model(model_path, use_keras)
    model_lock = threading.Lock()  # one prediction at a time: a LiteRT interpreter is not thread-safe

    app = Flask(__name__, static_folder=WEB_DIR, static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_MB * 1024 * 1024

    def error(status, message, **extra):
        return jsonify({"error": message, **extra}), status

    @app.get("/")
    def page():
        return app.send_static_file("index.html")

    @app.get("/api/health")
    def health():
        return jsonify({"status": "ok", "model": os.path.basename(path), "runtime": runtime.split(",")[0],
                        "image_size": info["image_size"], "classes": len(info["class_names"]),
                        "max_images": MAX_IMAGES, "max_request_mb": MAX_REQUEST_MB})

    @app.post("/api/predict")
    def predict():
        top = request.args.get("top", str(TOP))
        if not top.isdecimal() or not 1 <= int(top) <= len(info["class_names"]):
            return error(400, f"top must be a whole number from 1 to {len(info['class_names'])}, not {top!r}")
        if request.mimetype == "multipart/form-data":
            uploads = [(upload.filename or name, upload.read()) for name, upload in request.files.items(multi=True)]
        else:  # the image itself as the body, whatever Content-Type the client set
            body = request.get_data(cache=False)
            uploads = [("body", body)] if body else []
        if not uploads:
            return error(400, "no image: send image files as multipart form fields, or one image as the body")
        if len(uploads) > MAX_IMAGES:
            return error(413, f"{len(uploads)} images at once: at most {MAX_IMAGES} a request")
        results, pixels = [], []
        for name, content in uploads:
            try:
                image = data.read_image_bytes(content, name)
            except data.UnreadableImage as e:
                results.append({"name": name, "error": str(e)})
                continue
            results.append({"name": name, "width": image.width, "height": image.height})
            pixels.append(data.fit_image(image, info["image_size"], info["resize"]))
        if not pixels:
            return error(422, results[0]["error"] if len(results) == 1 else "none of the images could be read",
                         results=results)
        with model_lock:
            probabilities = model.predict(np.stack(pixels).astype(np.float32), batch_size=MAX_IMAGES)
        readable = (result for result in results if "error" not in result)
        for result, probs in zip(readable, probabilities):
            result["top"] = checkpoint.top_classes(probs, int(top), info)
        return jsonify({"model": os.path.basename(path), "results": results})

    @app.errorhandler(413)
    def too_large(e):
        return error(413, f"request larger than {MAX_REQUEST_MB} MB")

    @app.errorhandler(404)
    @app.errorhandler(405)
    def not_here(e):
        return error(e.code, f"{request.method} {request.path}: {e.name.lower()}")

    return app


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="default: saved/model/model_new.h5, else the shipped model")
    parser.add_argument("--keras", action="store_true", help="run a Keras model in Keras even where it has a "
                                                              "LiteRT copy")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = parser.parse_args(argv)
    return checkpoint.run_script(lambda: serve(args))


def serve(args):
    from werkzeug.serving import make_server

    app = create_app(args.model, args.keras)
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except OSError as e:
        raise checkpoint.UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    print(f"Serving on http://{args.host}:{server.port} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
