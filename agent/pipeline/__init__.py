"""The detection pipeline on the board: frames from a source through six timed stages, sequential or pipelined.

  sources.py  the frames of an image folder (a FrameSet .npz; pack_images builds one), a video file or a camera,
              decoded with OpenCV when present, else Pillow; the errors (PipelineError, SourceError)
  mjpeg.py    the JPEG frames of an MJPEG AVI or raw MJPEG stream, for boards without OpenCV
  stages.py   read, preprocess, infer, postprocess, draw, encode: plain functions both modes share; the palette
  figures.py  a frame on its way (Work), a finished frame (FrameOut), the run's figures (the result's `pipeline`)
  run.py      run_pipeline: the sequential loop, or a thread per stage with bounded queues
  stream.py   the pipeline run without end, served as a live MJPEG stream

A pipeline job (agent/spec.py PipelineSpec) is run by agent/bench.py run_job, inside its power window.
"""
