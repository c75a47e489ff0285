# FGVCAircraft, few-shot: data/fgvc_aircraft/variants.txt, images_variant_{train,val,test}.txt, images/.
# Per-dataset settings of the official Tip-Adapter configs: top-level keys, which the method configs put
# into the head and the loop.
_base_ = ['./fewshot_224.py']
dataset_name = 'fgvc_aircraft'
num_classes = 100
init_alpha = 5.0
init_beta = 1.0
search_scale = [30, 30]
train_dataloader = dict(dataset=dict(type='FewShotFGVCAircraft', data_root='data/fgvc_aircraft'))
val_dataloader = dict(dataset=dict(type='FewShotFGVCAircraft', data_root='data/fgvc_aircraft'))
test_dataloader = dict(dataset=dict(type='FewShotFGVCAircraft', data_root='data/fgvc_aircraft'))
