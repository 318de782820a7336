"""The command line: a front end beside the studio, on the same engine interface and operation specs.

    generate.py    inpaint, img2img, outpaint, upscale (one subcommand per operation spec), models
    training.py    prepare-data, train-vae, train-unet, evaluate (the embedded model)
    imagefiles.py  input images and masks, output PNGs, read through the canvas package
    contract.py    the error contract: the parser, the checks before the job, exit codes, the log file

``main.py`` registers each module's subcommands; a subcommand's ``func(args)`` returns the exit
code: 0 done, 1 the job failed while running (one line naming the log file with the details), 2 bad
input (one line on stderr, nothing written); main.py runs each through ``contract.run``.
"""
