"""Detection on the board: decoders, NMS and scoring, numpy only."""
