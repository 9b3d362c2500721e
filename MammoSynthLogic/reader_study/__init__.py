"""Reader studies: a blinded export of real and synthetic mammograms with an answer key, and scoring.

`prepare` picks and blinds the images, `canvas` crops every breast and fits it to one canvas, `telltales` checks
that trivial features do not tell real from synthetic, `blinded` is the one neutral DICOM writer every copy goes
through, `responses` is the answer-file format the reader app writes and `score` reads, `scoring` holds the metrics
(MAMBO Table 2, MAM-E ROC) and `report` the plots and the Markdown/HTML report.
"""
