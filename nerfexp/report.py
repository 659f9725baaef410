"""``python -m nerfexp.report <multirun dir>``: the sweep report (:mod:`nerfexp.studies.report`)."""
from nerfexp.studies.report import main

if __name__ == "__main__":
    main()
